"""The Ray Jobs API side of `prehoc-ray submit / status / logs`: the submission request (runtime
env, entrypoint, metadata, submission id), the client and its authentication, submitting once,
and following a job to its end. The commands themselves (options, messages) are cli/submit.py.

Output location on the cluster (`out`): by default
    ${PREHOC_RAY_STORAGE:-/tmp/prehoc-ray}/<name>-<spec hash>
expanded by the job's shell on the node that runs the driver (the head node).

Addresses: the one given, else RAY_API_SERVER_ADDRESS / RAY_ADDRESS, else http://127.0.0.1:8265.
A given address wins over those variables (Ray's client would let them override it).

Token authentication (Ray >= 2.52): the cluster's token is sent only with RAY_AUTH_MODE=token,
and then by Ray's own client, which loads it (RAY_AUTH_TOKEN, else the file named by
RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token) and sends it as `Authorization: Bearer`. In token
mode the token never travels over plain http to a host that is not this machine unless the
caller allows it explicitly.

Errors are JobsClientError, whose `code` is the exit status a command ends with: 2 for bad
input (paths, options), 1 for a failure the message explains (prehoc_ray.types' EXIT_BAD_INPUT
and EXIT_FAILURE, which the CLI uses too).
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prehoc_ray.spec.job import JobSpec
from prehoc_ray.spec.redact import REDACTED
from prehoc_ray.types import EXIT_BAD_INPUT, EXIT_FAILURE

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
STORAGE_ENV = "PREHOC_RAY_STORAGE"
DEFAULT_STORAGE = "/tmp/prehoc-ray"
# .env files hold secrets: never uploaded with the working directory (gitignore-style patterns,
# as Ray's runtime_env excludes read them: a pattern without "/" matches at any depth).
ENV_FILE_EXCLUDES = [".env", ".env.*", "*.env"]
DEFAULT_EXCLUDES = [".git", ".venv", "**/__pycache__", "*.egg-info", "runs/", "out/", *ENV_FILE_EXCLUDES]
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class JobsClientError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def submission_id_for(spec: JobSpec) -> str:
    return f"prehoc-{spec.name}-{spec.spec_hash()}"


def inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


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
    raise JobsClientError(
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
    """A JobSubmissionClient for `address`; JobsClientError(1) with a useful message on failure.

    No header of ours: Ray's client adds the token itself in token mode, and only then."""
    from ray.job_submission import JobSubmissionClient

    addr = resolve_address(address)
    check_token_transport(addr, allow_insecure_token)
    saved = {v: os.environ.pop(v) for v in ADDRESS_ENV if address and v in os.environ}
    try:
        return JobSubmissionClient(addr)
    except ConnectionError as exc:
        raise JobsClientError(
            f"cannot reach the Ray dashboard at {addr}: {exc} (is the head running, and is --address its "
            "dashboard URL, e.g. http://HEAD:8265?)"
        ) from None
    except Exception as exc:  # Ray raises RuntimeError/AuthenticationError/ValueError here
        raise JobsClientError(explain(exc, addr)) from None
    finally:
        os.environ.update(saved)


def explain(exc: BaseException, addr: str) -> str:
    """A one-line message for an error of the Ray job API at `addr` (with the token hint on a 401/403)."""
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


# ----- jobs -------------------------------------------------------------------------------------


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


def status_of(info) -> str:
    """A JobDetails' status as a string ("PENDING", "RUNNING", "SUCCEEDED", ...)."""
    return str(getattr(info.status, "value", info.status))


def short_message(info, max_len: int = 300) -> str:
    """Ray's job message without the log excerpt it appends on failure (we show the logs)."""
    msg = " ".join(str(info.message or "").split())
    cut = msg.find(", last available logs")
    if cut >= 0:
        msg = msg[:cut]
    return msg if len(msg) <= max_len else msg[: max_len - 3] + "..."


def last_log_line(client, sid: str) -> str:
    """The job's last error line (else its last line) as a hint; "" when the logs cannot be read."""
    try:
        lines = [ln.strip() for ln in client.get_job_logs(sid).splitlines() if ln.strip()]
    except Exception:  # only a hint
        return ""
    errors = [ln for ln in lines if ln.lower().startswith(("error", "traceback")) or "Error:" in ln]
    pick = errors[-1] if errors else (lines[-1] if lines else "")
    return pick if len(pick) <= 400 else pick[:397] + "..."


def submit_unless_present(client, req: dict[str, Any]) -> tuple[Any, bool]:
    """Submit `req` unless a job with its submission id exists (the id makes a submission once only).

    Returns (that job's JobDetails, False) when one exists and nothing was submitted, else
    (None, concurrent): `concurrent` when someone else submitted the same id between the
    check and this submission (then that job is the one to follow)."""
    existing = job_info(client, req["submission_id"])
    if existing is not None:
        return existing, False
    try:
        client.submit_job(**req)
    except RuntimeError as exc:
        if "already exists" not in str(exc).lower():
            raise
        return None, True
    return None, False


def _note_to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def follow_logs(
    client,
    sid: str,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    on_note: Callable[[str], None] = _note_to_stderr,
) -> str:
    """Stream the job's logs to stdout until it ends; return its final status.

    When the log stream breaks off early, `on_note` gets a line saying so and the status is polled."""

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
        raise JobsClientError(
            f"--timeout: job {sid} still running after {timeout_s:.0f} s (it keeps running; `prehoc-ray status {sid}`)"
        ) from None
    except Exception as exc:  # the websocket closed early: fall back to polling
        on_note(f"(log stream interrupted: {' '.join(str(exc).split())}; polling the status)")
    while True:
        status = status_of(client.get_job_info(sid))
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise JobsClientError(f"--timeout: job {sid} still {status} after {timeout_s:.0f} s (it keeps running)")
        time.sleep(poll_s)


# ----- the submission request -------------------------------------------------------------------


def _merged_runtime_env(spec: JobSpec, runtime_env_file: Path | None) -> dict[str, Any]:
    """The spec's cluster.runtime_env with the file's mapping (if any) merged over it."""
    runtime_env: dict[str, Any] = dict(spec.cluster.runtime_env or {})
    if runtime_env_file is not None:
        from prehoc_ray.spec.safe_yaml import YAMLInputError, load_yaml

        try:
            # the loader for untrusted YAML: size, depth and alias caps, duplicate keys refused
            extra, _ = load_yaml(runtime_env_file, what="--runtime-env file")
        except YAMLInputError as exc:
            where = f":{exc.line}" if exc.line else ""
            raise JobsClientError(f"--runtime-env {runtime_env_file}{where}: {exc.problem}", EXIT_BAD_INPUT) from None
        except (OSError, ValueError) as exc:
            raise JobsClientError(
                f"--runtime-env {runtime_env_file}: cannot read: {type(exc).__name__}", EXIT_BAD_INPUT
            ) from None
        if not isinstance(extra, dict):
            raise JobsClientError(f"--runtime-env {runtime_env_file}: expected a mapping", EXIT_BAD_INPUT)
        runtime_env.update(extra)
    return runtime_env


def _working_dir_and_spec(spec_path: Path, working_dir: str, runtime_env: dict[str, Any]) -> tuple[str, str]:
    """(working_dir to upload, the spec's path inside it): the runtime_env's working_dir when
    the caller left the default "." and it names one; a local one must hold the spec."""
    wd = runtime_env.get("working_dir") if working_dir == "." and runtime_env.get("working_dir") else working_dir
    if "://" in str(wd):
        return wd, spec_path.as_posix()  # a remote package: the caller gives the path inside it
    root = Path(wd).expanduser().resolve()
    if not root.is_dir():
        raise JobsClientError(f"--working-dir {wd}: not a directory", EXIT_BAD_INPUT)
    if not inside(spec_path, root):
        raise JobsClientError(
            f"{spec_path}: the spec is outside the working directory {root}; run from a folder that "
            "contains it or pass --working-dir",
            EXIT_BAD_INPUT,
        )
    return str(root), spec_path.resolve().relative_to(root).as_posix()


def _metadata(spec: JobSpec, rel: str, out: str | None) -> dict[str, str]:
    """The job's metadata: what it runs (shown by `prehoc-ray status` and Ray's dashboard)."""
    cands = spec.candidate_specs()
    return {
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
    runtime_env = _merged_runtime_env(spec, runtime_env_file)
    wd, rel = _working_dir_and_spec(spec_path, working_dir, runtime_env)
    runtime_env["working_dir"] = wd
    runtime_env["excludes"] = list(dict.fromkeys([*(runtime_env.get("excludes") or []), *DEFAULT_EXCLUDES]))
    env_vars = dict(runtime_env.get("env_vars") or {})
    env_vars.setdefault("PYTHONUNBUFFERED", "1")  # logs stream as they are written
    runtime_env["env_vars"] = env_vars
    # A resumed run is a new Ray job on the same run directory: its id says so and when.
    sid = submission_id or submission_id_for(spec) + (time.strftime("-resume-%Y%m%d%H%M%S") if resume else "")
    out_arg = shlex.quote(out) if out else f'"${{{STORAGE_ENV}:-{DEFAULT_STORAGE}}}/{spec.name}-{spec.spec_hash()}"'
    entrypoint = f"python -m prehoc_ray run {shlex.quote(rel)} --out {out_arg}" + (" --resume" if resume else "")
    req: dict[str, Any] = {
        "entrypoint": entrypoint,
        "submission_id": sid,
        "runtime_env": runtime_env,
        "metadata": _metadata(spec, rel, out),
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
