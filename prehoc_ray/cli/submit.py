"""`prehoc-ray submit / status / logs`: run a job spec as a Ray job on a cluster.

submit JOB.yaml --address http://HEAD:8265 [--wait]
    Validates the spec, then submits `python -m prehoc_ray run <spec> --out <dir>` through
    ray.job_submission.JobSubmissionClient: the working directory (default: the current one)
    is uploaded, the spec path is given relative to it, the driver reserves no GPU
    (entrypoint_num_gpus=0), the metadata names the portfolio, and the submission id is
    derived from the spec (prehoc-<name>-<spec hash>), so submitting the same spec twice
    shows the first job's status instead of starting a second one (pass --submission-id to
    run it again on purpose; --resume continues an interrupted run in the same run directory
    as a new job, prehoc-<name>-<hash>-resume-<time>). --wait follows the logs and exits 1 if
    the job fails.

Output location on the cluster (`--out`): by default
    ${PREHOC_RAY_STORAGE:-/tmp/prehoc-ray}/<name>-<spec hash>
expanded by the job's shell on the node that runs the driver (the head node). The manifests
in cluster/ set PREHOC_RAY_STORAGE to a shared volume; elsewhere pass --out explicitly (an
absolute path on shared storage). A relative --out lands in the job's unpacked working
directory, which Ray deletes with the session: fine for a smoke test, not for a plan you need.

Addresses: --address, else RAY_API_SERVER_ADDRESS / RAY_ADDRESS, else http://127.0.0.1:8265.
An explicit --address wins over those variables (Ray's client would let them override it).

Token authentication (Ray >= 2.52): the cluster's token is sent only with RAY_AUTH_MODE=token,
and then by Ray's own client, which loads it (RAY_AUTH_TOKEN, else the file named by
RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token) and sends it as `Authorization: Bearer`. With
RAY_AUTH_MODE unset or `disabled` nothing is sent, whatever those places hold: a token is not
offered to an address nobody said uses it. In token mode the token never travels over plain
http to a host that is not this machine (a port-forward's http://127.0.0.1:8265 is fine,
https anywhere is fine): that needs --allow-insecure-token, said explicitly.

Secrets in the request: `--dry-run` prints runtime_env.env_vars with every value replaced by
"<redacted>" (the submitted request carries the real values), and the working-directory upload
leaves out .env files (runtime_env excludes; the output names the ones it left out).

Exit codes: 0 success, 2 bad input (spec, paths, options), 1 a failure the message explains
(cluster unreachable, authentication refused, job failed).
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer

from prehoc_ray.cli import EXIT_BAD_INPUT, EXIT_FAILURE, app
from prehoc_ray.cli.validate import Problem, check_paths, raw_spec
from prehoc_ray.spec.job import JobSpec, SpecError, load_job
from prehoc_ray.spec.redact import REDACTED

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
STORAGE_ENV = "PREHOC_RAY_STORAGE"
DEFAULT_STORAGE = "/tmp/prehoc-ray"
# .env files hold secrets: never uploaded with the working directory (gitignore-style patterns,
# as Ray's runtime_env excludes read them: a pattern without "/" matches at any depth).
ENV_FILE_EXCLUDES = [".env", ".env.*", "*.env"]
DEFAULT_EXCLUDES = [".git", ".venv", "**/__pycache__", "*.egg-info", "runs/", "out/", *ENV_FILE_EXCLUDES]
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def submission_id_for(spec: JobSpec) -> str:
    return f"prehoc-{spec.name}-{spec.spec_hash()}"


# ----- authentication -----------------------------------------------------------------------


def auth_mode(env: dict[str, str] | None = None) -> str:
    """RAY_AUTH_MODE as Ray reads it: "token", "disabled", or "" (unset)."""
    return (os.environ if env is None else env).get("RAY_AUTH_MODE", "").strip().lower()


def _local_token_source(env: dict[str, str] | None = None, home: Path | None = None) -> str:
    """Where a token would be found (for a hint only; never read into a header here)."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return "RAY_AUTH_TOKEN_PATH"
    default = (home or Path.home()) / ".ray" / "auth_token"
    return str(default) if default.is_file() else ""


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: not resolved here (it could point anywhere)


def check_token_transport(addr: str, allow_insecure: bool = False, env: dict[str, str] | None = None) -> None:
    """In token mode, refuse to send the token over plain http to a host other than this machine."""
    if auth_mode(env) != "token":
        return  # nothing is sent
    parts = urlsplit(addr if "://" in addr else "http://" + addr)  # Ray reads a bare HOST:PORT as http
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname or ""
    if is_loopback(host):
        return
    raise CliError(
        f"--address {addr}: refusing to send the Ray token (RAY_AUTH_MODE=token) over plain {parts.scheme}:// to "
        f"{host or addr}, where anyone on the path can read it: use an https:// address or a port-forward to "
        "http://127.0.0.1:8265, or pass --allow-insecure-token to send it anyway",
        EXIT_BAD_INPUT,
    )


def resolve_address(address: str | None) -> str:
    if address:
        return address
    for var in ADDRESS_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return DEFAULT_ADDRESS


def make_client(address: str | None, allow_insecure_token: bool = False):
    """A JobSubmissionClient for `address`; CliError(1) with a useful message on failure.

    No header of ours: Ray's client adds the token itself in token mode, and only then."""
    from ray.job_submission import JobSubmissionClient

    addr = resolve_address(address)
    check_token_transport(addr, allow_insecure_token)
    saved = {v: os.environ.pop(v) for v in ADDRESS_ENV if address and v in os.environ}
    try:
        return JobSubmissionClient(addr)
    except ConnectionError as exc:
        raise CliError(
            f"cannot reach the Ray dashboard at {addr}: {exc} (is the head running, and is --address its "
            "dashboard URL, e.g. http://HEAD:8265?)"
        ) from None
    except Exception as exc:  # Ray raises RuntimeError/AuthenticationError/ValueError here
        raise CliError(_explain(exc, addr)) from None
    finally:
        os.environ.update(saved)


def _explain(exc: BaseException, addr: str) -> str:
    text = " ".join(str(exc).split())
    if type(exc).__name__ == "AuthenticationError" or "status code 401" in text or "status code 403" in text:
        found = _local_token_source()
        unsent = (
            f"; a token is set ({found}) but is sent only with RAY_AUTH_MODE=token"
            if found and auth_mode() != "token"
            else ""
        )
        return (
            f"the Ray cluster at {addr} refused the request: {text}. It uses token authentication: set "
            "RAY_AUTH_MODE=token and provide the cluster's token as RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
            f"~/.ray/auth_token (`ray get-auth-token` on the head prints it){unsent}"
        )
    return f"Ray job API at {addr}: {text}"


def _not_found(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "404" in text or "does not exist" in text or "not found" in text


def job_info(client, submission_id: str):
    """JobDetails, or None when no job has this submission id."""
    try:
        return client.get_job_info(submission_id)
    except RuntimeError as exc:
        if _not_found(exc):
            return None
        raise


# ----- the submission -------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def submission_problems(spec_path: Path, spec: JobSpec, working_dir: Path | None) -> list[Problem]:
    """Path checks for a spec that runs on a cluster from an uploaded working directory.

    Relative paths travel with the working directory, so they must exist and lie inside it.
    Absolute paths and installed packages are the cluster's business: only warnings here.
    """
    raw = raw_spec(spec_path)
    problems: list[Problem] = []
    history = str(raw.get("history") or "")
    for p in check_paths(spec):
        if p.field == "history":
            if history and Path(history).is_absolute() and p.error:
                problems.append(
                    Problem(p.field, p.message + " here; an absolute path must exist on the cluster nodes", error=False)
                )
            else:
                problems.append(p)
            continue
        section, idx, key = (p.field.split(".") + ["", ""])[:3]
        items = raw.get(section) or []
        item = items[int(idx)] if idx.isdigit() and int(idx) < len(items) else None
        given = str(item.get(key, "")) if isinstance(item, dict) and key in ("path",) else ""
        if key in ("builtin", "package"):
            problems.append(Problem(p.field, p.message + " here; it must be installed on the cluster", error=False))
        elif key == "path" and given and Path(given).is_absolute():
            problems.append(
                Problem(p.field, p.message + " here; an absolute path must exist on the cluster nodes", error=False)
            )
        else:
            problems.append(p)
    if working_dir is not None:
        for section in ("tasks", "models"):
            for k, item in enumerate(raw.get(section) or []):
                if isinstance(item, dict) and item.get("path") and not Path(str(item["path"])).is_absolute():
                    resolved = spec_path.resolve().parent / str(item["path"])
                    if not _inside(resolved, working_dir):
                        problems.append(
                            Problem(
                                f"{section}.{k}.path",
                                f"{item['path']!r} is outside the working directory "
                                f"{str(working_dir)!r}: it would not reach the cluster",
                            )
                        )
        if (
            history
            and not Path(history).is_absolute()
            and not _inside(spec_path.resolve().parent / history, working_dir)
        ):
            problems.append(
                Problem(
                    "history",
                    f"{history!r} is outside the working directory {str(working_dir)!r}: "
                    "it would not reach the cluster",
                )
            )
    return problems


def build_request(
    spec_path: Path,
    spec: JobSpec,
    *,
    working_dir: str,
    out: str | None,
    runtime_env_file: Path | None = None,
    submission_id: str | None = None,
    entrypoint_num_cpus: float | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """The keyword arguments of JobSubmissionClient.submit_job for this spec."""
    runtime_env: dict[str, Any] = dict(spec.cluster.runtime_env or {})
    if runtime_env_file is not None:
        from prehoc_ray.spec.safe_yaml import YAMLInputError, load_yaml

        try:
            # the loader for untrusted YAML: size, depth and alias caps, duplicate keys refused
            extra, _ = load_yaml(runtime_env_file, what="--runtime-env file")
        except YAMLInputError as exc:
            where = f":{exc.line}" if exc.line else ""
            raise CliError(f"--runtime-env {runtime_env_file}{where}: {exc.problem}", EXIT_BAD_INPUT) from None
        except (OSError, ValueError) as exc:
            raise CliError(
                f"--runtime-env {runtime_env_file}: cannot read: {type(exc).__name__}", EXIT_BAD_INPUT
            ) from None
        if not isinstance(extra, dict):
            raise CliError(f"--runtime-env {runtime_env_file}: expected a mapping", EXIT_BAD_INPUT)
        runtime_env.update(extra)
    wd = runtime_env.get("working_dir") if working_dir == "." and runtime_env.get("working_dir") else working_dir
    remote_wd = "://" in str(wd)
    if remote_wd:
        rel = spec_path.as_posix()  # a remote package: the caller gives the path inside it
    else:
        root = Path(wd).expanduser().resolve()
        if not root.is_dir():
            raise CliError(f"--working-dir {wd}: not a directory", EXIT_BAD_INPUT)
        if not _inside(spec_path, root):
            raise CliError(
                f"{spec_path}: the spec is outside the working directory {root}; run from a folder that "
                "contains it or pass --working-dir",
                EXIT_BAD_INPUT,
            )
        rel = spec_path.resolve().relative_to(root).as_posix()
        wd = str(root)
    runtime_env["working_dir"] = wd
    runtime_env["excludes"] = list(dict.fromkeys([*(runtime_env.get("excludes") or []), *DEFAULT_EXCLUDES]))
    env_vars = dict(runtime_env.get("env_vars") or {})
    env_vars.setdefault("PYTHONUNBUFFERED", "1")  # logs stream as they are written
    runtime_env["env_vars"] = env_vars
    # A resumed run is a new Ray job on the same run directory: its id says so and when.
    sid = submission_id or submission_id_for(spec) + (time.strftime("-resume-%Y%m%d%H%M%S") if resume else "")
    out_arg = shlex.quote(out) if out else f'"${{{STORAGE_ENV}:-{DEFAULT_STORAGE}}}/{spec.name}-{spec.spec_hash()}"'
    entrypoint = f"python -m prehoc_ray run {shlex.quote(rel)} --out {out_arg}" + (" --resume" if resume else "")
    cands = spec.candidate_specs()
    metadata = {
        "prehoc_job": spec.name,
        "portfolio": f"{spec.name}: {len(cands)} candidates ({len(spec.tasks)} tasks x {len(spec.models)} models x "
        f"{len(spec.configs)} configs)",
        "tasks": ",".join(t.name for t in spec.tasks)[:500],
        "models": ",".join(m.name for m in spec.models)[:500],
        "spec": rel,
        "spec_hash": spec.spec_hash(),
        "out": out or f"${STORAGE_ENV}/{spec.name}-{spec.spec_hash()}",
        "backend": spec.backend,
        "submitted_by": "prehoc-ray",
    }
    req: dict[str, Any] = {
        "entrypoint": entrypoint,
        "submission_id": sid,
        "runtime_env": runtime_env,
        "metadata": metadata,
        "entrypoint_num_gpus": 0,
    }
    if entrypoint_num_cpus is not None:
        req["entrypoint_num_cpus"] = entrypoint_num_cpus
    return req


def redacted_request(req: dict[str, Any]) -> dict[str, Any]:
    """The request as shown to people: runtime_env.env_vars keep their keys, not their values."""
    shown = dict(req)
    renv = dict(shown.get("runtime_env") or {})
    if isinstance(renv.get("env_vars"), dict):
        renv["env_vars"] = {k: REDACTED for k in renv["env_vars"]}
    shown["runtime_env"] = renv
    return shown


def env_files_left_out(runtime_env: dict[str, Any], limit: int = 10_000) -> list[str]:
    """The .env files of a local working directory that the excludes keep out of the upload."""
    wd = runtime_env.get("working_dir")
    if not wd or "://" in str(wd) or not Path(wd).is_dir():
        return []
    root = Path(wd)
    found: list[str] = []
    skip = {".git", ".venv", "__pycache__", "node_modules"}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if any(fnmatch.fnmatchcase(name, pat) for pat in ENV_FILE_EXCLUDES):
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
                if len(found) >= limit:
                    return sorted(found)
    return sorted(found)


def _status_str(info) -> str:
    return str(getattr(info.status, "value", info.status))


def short_message(info, max_len: int = 300) -> str:
    """Ray's job message without the log excerpt it appends on failure (we show the logs)."""
    msg = " ".join(str(info.message or "").split())
    cut = msg.find(", last available logs")
    if cut >= 0:
        msg = msg[:cut]
    return msg if len(msg) <= max_len else msg[: max_len - 3] + "..."


def _last_log_line(client, sid: str) -> str:
    try:
        lines = [ln.strip() for ln in client.get_job_logs(sid).splitlines() if ln.strip()]
    except Exception:  # only a hint
        return ""
    errors = [ln for ln in lines if ln.lower().startswith(("error", "traceback")) or "Error:" in ln]
    pick = errors[-1] if errors else (lines[-1] if lines else "")
    return pick if len(pick) <= 400 else pick[:397] + "..."


def describe(info) -> str:
    meta = info.metadata or {}
    lines = [f"submission id: {info.submission_id}", f"status:        {_status_str(info)}"]
    if info.message:
        lines.append(f"message:       {short_message(info)}")
    for key, label in (("start_time", "started"), ("end_time", "ended")):
        t = getattr(info, key, None)
        if t:
            lines.append(f"{label + ':':<14} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t / 1000))}")
    if meta.get("portfolio"):
        lines.append(f"portfolio:     {meta['portfolio']}")
    if meta.get("out"):
        lines.append(f"output:        {meta['out']} (on the cluster)")
    if info.entrypoint:
        lines.append(f"entrypoint:    {info.entrypoint}")
    return "\n".join(lines)


def follow_logs(client, sid: str, poll_s: float = 2.0, timeout_s: float | None = None) -> str:
    """Stream the job's logs to stdout until it ends; return its final status."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(sid):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        if timeout_s is None:
            asyncio.run(tail())
        else:
            asyncio.run(asyncio.wait_for(tail(), timeout_s))
    except TimeoutError:
        raise CliError(
            f"--timeout: job {sid} still running after {timeout_s:.0f} s (it keeps running; `prehoc-ray status {sid}`)"
        ) from None
    except Exception as exc:  # the websocket closed early: fall back to polling
        typer.echo(f"(log stream interrupted: {' '.join(str(exc).split())}; polling the status)", err=True)
    while True:
        status = _status_str(client.get_job_info(sid))
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(f"--timeout: job {sid} still {status} after {timeout_s:.0f} s (it keeps running)")
        time.sleep(poll_s)


def _finish(client, sid: str, status: str) -> None:
    info = client.get_job_info(sid)
    typer.echo(describe(info), err=True)
    if status != "SUCCEEDED":
        last = _last_log_line(client, sid)
        raise CliError(
            f"job {sid} {status}: {short_message(info) or 'see its logs'}"
            + (f"; last log line: {last}" if last else "")
            + f" (all logs: `prehoc-ray logs {sid}`)"
        )


def _run(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except CliError as exc:
        typer.echo(f"prehoc-ray: {exc}", err=True)
        raise typer.Exit(exc.code) from None


def _load(spec_path: Path) -> JobSpec:
    try:
        return load_job(spec_path)
    except SpecError as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None


def _submit(
    spec_path: Path,
    address: str | None,
    wait: bool,
    working_dir: str,
    out: str | None,
    runtime_env: Path | None,
    submission_id: str | None,
    entrypoint_num_cpus: float | None,
    dry_run: bool,
    timeout: float | None,
    resume: bool = False,
    allow_insecure_token: bool = False,
) -> None:
    spec = _load(spec_path)
    wd = Path(working_dir).expanduser() if "://" not in working_dir else None
    problems = submission_problems(spec_path, spec, wd)
    for p in problems:
        typer.echo(p.line(spec_path), err=True)
    if any(p.error for p in problems):
        raise CliError(f"{spec_path}: not submitted: fix the error(s) above", EXIT_BAD_INPUT)
    req = build_request(
        spec_path,
        spec,
        working_dir=working_dir,
        out=out,
        runtime_env_file=runtime_env,
        submission_id=submission_id,
        entrypoint_num_cpus=entrypoint_num_cpus,
        resume=resume,
    )
    sid = req["submission_id"]
    left_out = env_files_left_out(req["runtime_env"])
    if left_out:
        typer.echo(
            f"not uploaded (secrets; runtime_env excludes {', '.join(ENV_FILE_EXCLUDES)}): "
            + ", ".join(left_out[:10])
            + (f" and {len(left_out) - 10} more" if len(left_out) > 10 else ""),
            err=True,
        )
    if dry_run:
        typer.echo(json.dumps({"address": resolve_address(address), **redacted_request(req)}, indent=2))
        return
    client = make_client(address, allow_insecure_token)
    try:
        existing = job_info(client, sid)
        if existing is not None:
            status = _status_str(existing)
            typer.echo(
                f"{sid}: this spec was already submitted to {resolve_address(address)}; not submitting it again "
                f"(pass --submission-id to run it once more, or --resume to continue it).",
                err=True,
            )
            if not (wait or status in ("FAILED", "STOPPED")):
                typer.echo(describe(existing))  # else _finish below shows it
        else:
            try:
                client.submit_job(**req)
            except RuntimeError as exc:
                if "already exists" not in str(exc).lower():
                    raise
                typer.echo(f"{sid}: submitted concurrently by someone else; following that job", err=True)
            typer.echo(f"submitted {sid} to {resolve_address(address)}")
            typer.echo(f"output on the cluster: {req['metadata']['out']}")
            status = _status_str(client.get_job_info(sid))
        if wait and status not in TERMINAL:
            status = follow_logs(client, sid, timeout_s=timeout)
        if wait or status in ("FAILED", "STOPPED"):
            _finish(client, sid, status)
        else:
            typer.echo(f"follow it: prehoc-ray logs {sid} --follow --address {resolve_address(address)}")
    except CliError:
        raise
    except Exception as exc:  # Ray's client raises bare RuntimeErrors
        raise CliError(_explain(exc, resolve_address(address))) from None


def _target_id(target: str) -> str:
    p = Path(target)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return submission_id_for(_load(p))
    return target


def _status(target: str, address: str | None, allow_insecure_token: bool = False) -> None:
    sid = _target_id(target)
    client = make_client(address, allow_insecure_token)
    try:
        info = job_info(client, sid)
    except Exception as exc:
        raise CliError(_explain(exc, resolve_address(address))) from None
    if info is None:
        raise CliError(f"no job with submission id {sid} on {resolve_address(address)}")
    typer.echo(describe(info))


def _logs(target: str, address: str | None, follow: bool, allow_insecure_token: bool = False) -> None:
    sid = _target_id(target)
    client = make_client(address, allow_insecure_token)
    try:
        if job_info(client, sid) is None:
            raise CliError(f"no job with submission id {sid} on {resolve_address(address)}")
        if follow:
            status = follow_logs(client, sid)
            if status != "SUCCEEDED":
                raise CliError(f"job {sid} {status}")
        else:
            typer.echo(client.get_job_logs(sid), nl=False)
    except CliError:
        raise
    except Exception as exc:
        raise CliError(_explain(exc, resolve_address(address))) from None


ADDRESS_HELP = "Ray dashboard URL, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS / RAY_ADDRESS, else http://127.0.0.1:8265)."
INSECURE_HELP = (
    "With RAY_AUTH_MODE=token: send the token over plain http to a host other than this machine "
    "(refused without it; use https or a port-forward to 127.0.0.1 instead)."
)


@app.command("submit")
def submit_cmd(
    spec_path: Path = typer.Argument(..., metavar="JOB.yaml", help="The job spec (inside the working directory)."),
    address: str = typer.Option(None, "--address", help=ADDRESS_HELP),
    wait: bool = typer.Option(False, "--wait", help="Follow the logs until the job ends; exit 1 if it fails."),
    working_dir: str = typer.Option(
        ".", "--working-dir", help="Uploaded to the cluster; the spec path is given relative to it."
    ),
    out: str = typer.Option(
        None,
        "--out",
        help=f"Run directory on the cluster (default ${STORAGE_ENV}/<name>-<spec hash>, {DEFAULT_STORAGE} when unset).",
    ),
    runtime_env: Path = typer.Option(
        None, "--runtime-env", help="YAML/JSON runtime_env merged over the spec's cluster.runtime_env."
    ),
    submission_id: str = typer.Option(
        None, "--submission-id", help="Override the id derived from the spec (to run it again)."
    ),
    entrypoint_num_cpus: float = typer.Option(
        None, "--entrypoint-num-cpus", help="CPUs reserved for the driver (default 0)."
    ),
    timeout: float = typer.Option(None, "--timeout", help="With --wait: give up following after this many seconds."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run in the same --out (a new job id)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the submission request (env_vars values redacted) and stop."
    ),
    allow_insecure_token: bool = typer.Option(False, "--allow-insecure-token", help=INSECURE_HELP),
) -> None:
    """Submit a job spec as a Ray job (driver without GPUs) to a cluster."""
    _run(
        _submit,
        spec_path,
        address,
        wait,
        working_dir,
        out,
        runtime_env,
        submission_id,
        entrypoint_num_cpus,
        dry_run,
        timeout,
        resume,
        allow_insecure_token,
    )


@app.command("status")
def status_cmd(
    target: str = typer.Argument(..., metavar="SUBMISSION_ID|JOB.yaml"),
    address: str = typer.Option(None, "--address", help=ADDRESS_HELP),
    allow_insecure_token: bool = typer.Option(False, "--allow-insecure-token", help=INSECURE_HELP),
) -> None:
    """Status of a submitted run (by submission id, or by the spec that was submitted)."""
    _run(_status, target, address, allow_insecure_token)


@app.command("logs")
def logs_cmd(
    target: str = typer.Argument(..., metavar="SUBMISSION_ID|JOB.yaml"),
    address: str = typer.Option(None, "--address", help=ADDRESS_HELP),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the job ends."),
    allow_insecure_token: bool = typer.Option(False, "--allow-insecure-token", help=INSECURE_HELP),
) -> None:
    """Logs of a submitted run."""
    _run(_logs, target, address, follow, allow_insecure_token)
