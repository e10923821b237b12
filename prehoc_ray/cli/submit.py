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

This module parses, calls and prints; the Ray Jobs API side (the request, the client and its
token rules, submitting once, following a job) is prehoc_ray/execution/jobs_client.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from prehoc_ray.cli import EXIT_BAD_INPUT, app
from prehoc_ray.cli.validate import Problem, check_paths, raw_spec
from prehoc_ray.execution.jobs_client import (
    DEFAULT_STORAGE,
    ENV_FILE_EXCLUDES,
    STORAGE_ENV,
    TERMINAL,
    JobsClientError,
    build_request,
    env_files_left_out,
    explain,
    follow_logs,
    inside,
    job_info,
    last_log_line,
    make_client,
    redacted_request,
    resolve_address,
    short_message,
    status_of,
    submission_id_for,
    submit_unless_present,
)
from prehoc_ray.spec.job import JobSpec, SpecError, load_job

# One error for the commands and the client they call: its `code` is the exit status.


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
                    if not inside(resolved, working_dir):
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
            and not inside(spec_path.resolve().parent / history, working_dir)
        ):
            problems.append(
                Problem(
                    "history",
                    f"{history!r} is outside the working directory {str(working_dir)!r}: "
                    "it would not reach the cluster",
                )
            )
        truth = str(raw.get("truth") or "")
        if truth and not Path(truth).is_absolute() and not inside(spec_path.resolve().parent / truth, working_dir):
            # a warning: only the plan's comparison with it would be missing on the cluster
            problems.append(
                Problem(
                    "truth",
                    f"{truth!r} is outside the working directory {str(working_dir)!r}: the plan on the cluster "
                    "will not compare against it",
                    error=False,
                )
            )
    return problems


def describe(info) -> str:
    meta = info.metadata or {}
    lines = [f"submission id: {info.submission_id}", f"status:        {status_of(info)}"]
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


def _note(text: str) -> None:
    typer.echo(text, err=True)


def _finish(client, sid: str, status: str) -> None:
    info = client.get_job_info(sid)
    typer.echo(describe(info), err=True)
    if status != "SUCCEEDED":
        last = last_log_line(client, sid)
        raise JobsClientError(
            f"job {sid} {status}: {short_message(info) or 'see its logs'}"
            + (f"; last log line: {last}" if last else "")
            + f" (all logs: `prehoc-ray logs {sid}`)"
        )


def _run(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except JobsClientError as exc:
        typer.echo(f"prehoc-ray: {exc}", err=True)
        raise typer.Exit(exc.code) from None


def _load(spec_path: Path) -> JobSpec:
    try:
        return load_job(spec_path)
    except SpecError as exc:
        raise JobsClientError(str(exc), EXIT_BAD_INPUT) from None


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
        raise JobsClientError(f"{spec_path}: not submitted: fix the error(s) above", EXIT_BAD_INPUT)
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
        existing, concurrent = submit_unless_present(client, req)
        if existing is not None:
            status = status_of(existing)
            typer.echo(
                f"{sid}: this spec was already submitted to {resolve_address(address)}; not submitting it again "
                f"(pass --submission-id to run it once more, or --resume to continue it).",
                err=True,
            )
            if not (wait or status in ("FAILED", "STOPPED")):
                typer.echo(describe(existing))  # else _finish below shows it
        else:
            if concurrent:
                typer.echo(f"{sid}: submitted concurrently by someone else; following that job", err=True)
            typer.echo(f"submitted {sid} to {resolve_address(address)}")
            typer.echo(f"output on the cluster: {req['metadata']['out']}")
            status = status_of(client.get_job_info(sid))
        if wait and status not in TERMINAL:
            status = follow_logs(client, sid, timeout_s=timeout, on_note=_note)
        if wait or status in ("FAILED", "STOPPED"):
            _finish(client, sid, status)
        else:
            typer.echo(f"follow it: prehoc-ray logs {sid} --follow --address {resolve_address(address)}")
    except JobsClientError:
        raise
    except Exception as exc:  # Ray's client raises bare RuntimeErrors
        raise JobsClientError(explain(exc, resolve_address(address))) from None


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
        raise JobsClientError(explain(exc, resolve_address(address))) from None
    if info is None:
        raise JobsClientError(f"no job with submission id {sid} on {resolve_address(address)}")
    typer.echo(describe(info))


def _logs(target: str, address: str | None, follow: bool, allow_insecure_token: bool = False) -> None:
    sid = _target_id(target)
    client = make_client(address, allow_insecure_token)
    try:
        if job_info(client, sid) is None:
            raise JobsClientError(f"no job with submission id {sid} on {resolve_address(address)}")
        if follow:
            status = follow_logs(client, sid, on_note=_note)
            if status != "SUCCEEDED":
                raise JobsClientError(f"job {sid} {status}")
        else:
            typer.echo(client.get_job_logs(sid), nl=False)
    except JobsClientError:
        raise
    except Exception as exc:
        raise JobsClientError(explain(exc, resolve_address(address))) from None


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
