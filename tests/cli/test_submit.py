"""`prehoc-ray submit / status / logs`: the request built from a spec, token auth, error
paths, and a real head: submit --wait, the plan it wrote, a duplicate, a failing job."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prehoc_ray.cli import app
from prehoc_ray.cli import report as _report  # noqa: F401  (registers commands)
from prehoc_ray.cli import submit as _submit  # noqa: F401  (registers commands)
from prehoc_ray.cli import validate as _validate  # noqa: F401
from prehoc_ray.execution import jobs_client
from prehoc_ray.plan.simrun import simulated_spec_dict
from prehoc_ray.spec.job import load_job

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))  # the ray_head helper next to this file
runner = CliRunner()


def write_spec(folder: Path, spec: dict | None = None, name: str = "job.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(yaml.safe_dump(spec or simulated_spec_dict(name="unit"), sort_keys=False))
    return p


def invoke(*args: str):
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


# ----- token authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address,mode,allowed",
    [
        ("http://127.0.0.1:8265", "token", True),  # a port-forward
        ("http://localhost:8265", "token", True),
        ("http://[::1]:8265", "token", True),
        ("127.0.0.1:8265", "token", True),  # Ray reads a bare HOST:PORT as http
        ("https://head.example.com:8265", "token", True),
        ("http://head.example.com:8265", "token", False),
        ("http://10.0.0.5:8265", "token", False),
        ("10.0.0.5:8265", "token", False),
        ("http://localhost.evil.com:8265", "token", False),
        ("http://10.0.0.5:8265", "", True),  # nothing is sent without token mode
        ("http://10.0.0.5:8265", "disabled", True),
    ],
)
def test_token_transport_rules(address, mode, allowed):
    env = {"RAY_AUTH_MODE": mode} if mode else {}
    if allowed:
        jobs_client.check_token_transport(address, env=env)
    else:
        with pytest.raises(jobs_client.JobsClientError) as err:
            jobs_client.check_token_transport(address, env=env)
        assert err.value.code == 2 and "--allow-insecure-token" in str(err.value)
        assert "\n" not in str(err.value)
        jobs_client.check_token_transport(address, allow_insecure=True, env=env)


class _Recorder:
    """A stand-in for a Ray dashboard on every interface: answers the version check, says no job
    exists, and records the Authorization header of every request."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/api/version"):
                    body, code = (
                        json.dumps(
                            {"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "s"}
                        ).encode(),
                        200,
                    )
                else:
                    body, code = b"Job does not exist", 404
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _non_loopback_ip() -> str | None:
    import ipaddress

    import psutil

    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family.name == "AF_INET" and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return None


_CLI_SCRIPT = """
import json, sys
from typer.testing import CliRunner
from prehoc_ray.cli import app
from prehoc_ray.cli import submit, report, validate  # noqa: F401
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    out.append([r.exit_code, r.output])
print("RESULT " + json.dumps(out))
"""


def _cli_in_subprocess(calls: list[list[str]], mode: str | None, home: Path) -> list[tuple[int, str]]:
    """Run CLI calls in a fresh interpreter: Ray reads RAY_AUTH_MODE once per process."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update({"HOME": str(home), "RAY_AUTH_TOKEN": "env-s3cret", "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "300"})
    if mode is not None:
        env["RAY_AUTH_MODE"] = mode
    r = subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT, json.dumps(calls)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(home),
    )
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, r.stdout[-2000:] + r.stderr[-3000:]
    return [tuple(x) for x in json.loads(line[-1][len("RESULT ") :])]


@pytest.mark.slow
def test_the_token_goes_only_where_token_mode_sends_it(tmp_path):
    """RAY_AUTH_MODE unset: no token, though RAY_AUTH_TOKEN and ~/.ray/auth_token hold one; token mode:
    the token to a loopback address, never over plain http elsewhere unless --allow-insecure-token."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("file-s3cret\n")
    spec = write_spec(home / "wd", simulated_spec_dict(name="tok"))
    rec = _Recorder()
    try:
        local = f"http://127.0.0.1:{rec.port}"
        ip = _non_loopback_ip()
        remote = f"http://{ip}:{rec.port}" if ip else None

        # unset and disabled: nothing is sent, to any address
        for mode in (None, "disabled"):
            rec.seen.clear()
            ((code, out),) = _cli_in_subprocess([["status", "prehoc-x", "--address", local]], mode, home)
            assert code == 1 and "no job with submission id prehoc-x" in out, out
            assert rec.seen and all(auth is None for _, auth in rec.seen), (mode, rec.seen)

        # token mode, loopback: Ray's client sends the token (RAY_AUTH_TOKEN wins over the file)
        rec.seen.clear()
        ((code, out),) = _cli_in_subprocess([["status", "prehoc-x", "--address", local]], "token", home)
        assert code == 1, out
        assert rec.seen and all(auth == "Bearer env-s3cret" for _, auth in rec.seen), rec.seen

        if remote is None:
            pytest.skip("this machine has no non-loopback IPv4 address to test plain http to another host")
        # token mode, plain http to another host: refused before any request, by submit, status and logs
        rec.seen.clear()
        calls = [
            ["submit", str(spec), "--working-dir", str(home / "wd"), "--address", remote],
            ["status", "prehoc-x", "--address", remote],
            ["logs", "prehoc-x", "--address", remote],
        ]
        for code, out in _cli_in_subprocess(calls, "token", home):
            assert code == 2, out
            assert "refusing to send the Ray token" in out and "--allow-insecure-token" in out, out
            assert len([ln for ln in out.splitlines() if ln.startswith("prehoc-ray:")]) == 1, out
            assert "s3cret" not in out
        assert rec.seen == []
        # ... unless said explicitly
        ((code, out),) = _cli_in_subprocess(
            [["status", "prehoc-x", "--address", remote, "--allow-insecure-token"]], "token", home
        )
        assert code == 1 and "no job with submission id" in out, out
        assert rec.seen and all(auth == "Bearer env-s3cret" for _, auth in rec.seen), rec.seen
    finally:
        rec.close()


def test_ray_client_sends_the_token_itself_in_token_mode():
    """What the rules above rely on (Ray 2.60): RAY_AUTH_MODE=token -> Ray adds the bearer header."""
    code = (
        "from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled as h; "
        "import json; print(json.dumps([h({}), h({'Authorization': 'Bearer mine'})]))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "s3cret"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    auto, user = json.loads(r.stdout.strip().splitlines()[-1])
    assert auto == {"authorization": "Bearer s3cret"} or auto == {"Authorization": "Bearer s3cret"}
    assert user == {}  # a header we pass wins
    env["RAY_AUTH_MODE"] = "disabled"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(r.stdout.strip().splitlines()[-1])[0] == {}


# ----- the request ----------------------------------------------------------------------------


def test_dry_run_request(tmp_path, monkeypatch):
    spec_path = write_spec(tmp_path / "wd" / "jobs")
    spec = load_job(spec_path)
    monkeypatch.chdir(tmp_path / "wd")
    code, out = invoke("submit", "jobs/job.yaml", "--dry-run", "--address", "http://head:8265")
    assert code == 0, out
    req = json.loads(out[out.index("{") :])
    assert req["address"] == "http://head:8265"
    assert req["submission_id"] == f"prehoc-unit-{spec.spec_hash()}"
    assert req["entrypoint"] == (
        "python -m prehoc_ray run jobs/job.yaml --out "
        f'"${{PREHOC_RAY_STORAGE:-/tmp/prehoc-ray}}/unit-{spec.spec_hash()}"'
    )
    assert req["entrypoint_num_gpus"] == 0 and "entrypoint_num_cpus" not in req
    env = req["runtime_env"]
    assert env["working_dir"] == str((tmp_path / "wd").resolve())
    assert ".venv" in env["excludes"] and env["env_vars"]["PYTHONUNBUFFERED"] == "<redacted>"  # shown redacted
    md = req["metadata"]
    assert md["prehoc_job"] == "unit" and md["spec_hash"] == spec.spec_hash() and md["spec"] == "jobs/job.yaml"
    assert "12 candidates (3 tasks x 4 models x 1 configs)" in md["portfolio"]
    assert all(isinstance(v, str) for v in md.values())


def test_submission_id_follows_the_spec_not_its_formatting(tmp_path):
    d = simulated_spec_dict(name="same")
    a = write_spec(tmp_path / "a", d)
    b = tmp_path / "b.yaml"
    b.write_text(json.dumps(dict(reversed(list(d.items())))))  # other key order, JSON flavour of YAML
    assert jobs_client.submission_id_for(load_job(a)) == jobs_client.submission_id_for(load_job(b))
    d2 = simulated_spec_dict(name="same", probe_seconds=61)
    assert jobs_client.submission_id_for(load_job(write_spec(tmp_path / "c", d2))) != jobs_client.submission_id_for(
        load_job(a)
    )


@pytest.mark.parametrize(
    "text, expect",
    [
        ("a: &x [1, 2]\nb: {env_vars: {K: '1'}, env_vars: {K: 'sk-secret-value'}}\n", "duplicate key"),
        ("[" * 20000 + "]" * 20000, "deep"),
    ],
)
def test_a_malformed_runtime_env_file_is_one_clean_line(tmp_path, text, expect):
    spec_path = write_spec(tmp_path, simulated_spec_dict(name="rt-bad"))
    (tmp_path / "rt.yaml").write_text(text)
    code, out = invoke(
        "submit",
        str(spec_path),
        "--dry-run",
        "--working-dir",
        str(tmp_path),
        "--runtime-env",
        str(tmp_path / "rt.yaml"),
    )
    assert code == 2, out
    assert "rt.yaml" in out and expect in out.lower() and "sk-secret-value" not in out and "Traceback" not in out


def test_out_and_runtime_env_options(tmp_path):
    spec_path = write_spec(
        tmp_path,
        {**simulated_spec_dict(name="opts"), "cluster": {"runtime_env": {"pip": ["x==1"], "env_vars": {"A": "1"}}}},
    )
    (tmp_path / "rt.yaml").write_text("env_vars: {B: '2'}\nexcludes: [data/]\n")
    code, out = invoke(
        "submit",
        str(spec_path),
        "--dry-run",
        "--working-dir",
        str(tmp_path),
        "--out",
        "/mnt/shared/my run",
        "--runtime-env",
        str(tmp_path / "rt.yaml"),
        "--submission-id",
        "again-1",
        "--entrypoint-num-cpus",
        "1",
    )
    assert code == 0, out
    req = json.loads(out[out.index("{") :])
    assert req["entrypoint"].endswith("--out '/mnt/shared/my run'")
    assert req["submission_id"] == "again-1" and req["entrypoint_num_cpus"] == 1
    env = req["runtime_env"]
    assert env["pip"] == ["x==1"] and env["env_vars"] == {"B": "<redacted>", "PYTHONUNBUFFERED": "<redacted>"}
    real = jobs_client.build_request(
        spec_path, load_job(spec_path), working_dir=str(tmp_path), out=None, runtime_env_file=tmp_path / "rt.yaml"
    )
    assert real["runtime_env"]["env_vars"] == {"B": "2", "PYTHONUNBUFFERED": "1"}
    assert env["excludes"][0] == "data/"
    code, out = invoke(
        "submit", str(spec_path), "--dry-run", "--working-dir", str(tmp_path), "--resume", "--out", "/mnt/r"
    )
    req = json.loads(out[out.index("{") :])
    assert req["entrypoint"].endswith("--out /mnt/r --resume")
    assert req["submission_id"].startswith(jobs_client.submission_id_for(load_job(spec_path)) + "-resume-")


def test_dry_run_redacts_env_var_values_and_the_request_keeps_them(tmp_path):
    spec_path = write_spec(
        tmp_path,
        {**simulated_spec_dict(name="sec"), "cluster": {"runtime_env": {"env_vars": {"HF_TOKEN": "hf_SPEC_s3cret"}}}},
    )
    (tmp_path / "rt.yaml").write_text("env_vars: {WANDB_API_KEY: 'wandb-FILE-s3cret'}\n")
    code, out = invoke(
        "submit",
        str(spec_path),
        "--dry-run",
        "--working-dir",
        str(tmp_path),
        "--runtime-env",
        str(tmp_path / "rt.yaml"),
    )
    assert code == 0, out
    assert "s3cret" not in out
    shown = json.loads(out[out.index("{") :])["runtime_env"]["env_vars"]
    assert shown == {"WANDB_API_KEY": "<redacted>", "PYTHONUNBUFFERED": "<redacted>"}  # --runtime-env replaces env_vars
    code, out = invoke("submit", str(spec_path), "--dry-run", "--working-dir", str(tmp_path))
    assert (
        "hf_SPEC_s3cret" not in out
        and json.loads(out[out.index("{") :])["runtime_env"]["env_vars"]["HF_TOKEN"] == "<redacted>"
    )
    # what goes to Ray has the real values
    req = jobs_client.build_request(
        spec_path, load_job(spec_path), working_dir=str(tmp_path), out=None, runtime_env_file=tmp_path / "rt.yaml"
    )
    assert req["runtime_env"]["env_vars"]["WANDB_API_KEY"] == "wandb-FILE-s3cret"
    req = jobs_client.build_request(spec_path, load_job(spec_path), working_dir=str(tmp_path), out=None)
    assert req["runtime_env"]["env_vars"]["HF_TOKEN"] == "hf_SPEC_s3cret"


def test_redacted_copy_names_the_same_run(tmp_path):
    """<run>/job.yaml keeps the keys, not the values, and still hashes to the run's spec hash."""
    from prehoc_ray.io.manifest import spec_hash
    from prehoc_ray.spec.redact import write_redacted_copy

    d = {**simulated_spec_dict(name="sec"), "cluster": {"runtime_env": {"env_vars": {"HF_TOKEN": "hf_s3cret"}}}}
    src = write_spec(tmp_path / "a", d)
    write_redacted_copy(src, tmp_path / "job.yaml")
    text = (tmp_path / "job.yaml").read_text()
    assert "hf_s3cret" not in text and "HF_TOKEN: <redacted>" in text
    a, b = load_job(src), load_job(tmp_path / "job.yaml")
    assert a.cluster.runtime_env["env_vars"]["HF_TOKEN"] == "hf_s3cret"
    assert a.spec_hash() == b.spec_hash() and spec_hash(a) == spec_hash(b)
    plain = write_spec(tmp_path / "b", simulated_spec_dict(name="plain"))
    plain.write_text("# a comment that survives\n" + plain.read_text())
    write_redacted_copy(plain, tmp_path / "plain.yaml")
    assert (tmp_path / "plain.yaml").read_text() == plain.read_text()  # nothing to redact: verbatim


def test_env_files_stay_out_of_the_upload_and_the_output_says_so(tmp_path):
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    wd = tmp_path / "wd"
    spec_path = write_spec(wd, simulated_spec_dict(name="envf"))
    for rel in (".env", ".env.local", "config/prod.env", "deep/er/.env"):
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text("API_KEY=s3cret\n")
    (wd / "environment.yaml").write_text("name: x\n")  # not a .env file
    code, out = invoke("submit", str(spec_path), "--dry-run", "--working-dir", str(wd))
    assert code == 0, out
    note = [ln for ln in out.splitlines() if ln.startswith("not uploaded")]
    assert len(note) == 1 and ".env" in note[0], out
    for rel in (".env", ".env.local", "config/prod.env", "deep/er/.env"):
        assert rel in note[0]
    assert "environment.yaml" not in note[0]
    req = json.loads(out[out.index("{") :])
    # Ray's own packaging with the request's excludes: what the cluster would receive
    pkg = tmp_path / "pkg.zip"
    create_package(str(wd), pkg, include_gitignore=True, excludes=req["runtime_env"]["excludes"])
    names = {Path(n).as_posix().rstrip("/") for n in zipfile.ZipFile(pkg).namelist()}
    assert "job.yaml" in names and "environment.yaml" in names
    assert not [n for n in names if Path(n).name.startswith(".env") or n.endswith(".env")], names
    # no .env file: no note
    (
        (wd / ".env").unlink(),
        (wd / ".env.local").unlink(),
        (wd / "config/prod.env").unlink(),
        (wd / "deep/er/.env").unlink(),
    )
    code, out = invoke("submit", str(spec_path), "--dry-run", "--working-dir", str(wd))
    assert code == 0 and "not uploaded" not in out


@pytest.mark.parametrize(
    "case,expected",
    [
        ("outside", "the spec is outside the working directory"),
        ("data-outside", "tasks.0.path: '../../shared.csv' is outside the working directory"),
        ("missing-relative", "tasks.0.path: task 'qa': data file"),
        ("bad-spec", "budget: Field required"),
        ("bad-runtime-env", "--runtime-env"),
        ("history-outside", "history: '../../past.parquet' is outside the working directory"),
    ],
)
def test_bad_input_exits_2(tmp_path, case, expected):
    wd = tmp_path / "wd"
    spec = simulated_spec_dict(name="bad")
    spec["backend"] = "real"
    spec["tasks"] = [{"name": "qa", "path": "data/qa.csv"}]
    args = ["--working-dir", str(wd), "--dry-run"]
    wd.mkdir()
    if case == "outside":
        path = write_spec(tmp_path / "elsewhere", simulated_spec_dict(name="bad"))
    elif case == "data-outside":
        (tmp_path / "shared.csv").write_text("prompt,answer\na,b\n")
        spec["tasks"] = [{"name": "qa", "path": "../../shared.csv"}]
        path = write_spec(wd / "jobs", spec)
    elif case == "missing-relative":
        path = write_spec(wd, spec)
    elif case == "history-outside":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(
            pa.table({"candidate": ["a"], "step": [1.0], "value": [0.5], "group": ["qa"], "final": [0.6]}),
            tmp_path / "past.parquet",
        )
        d = simulated_spec_dict(name="bad")
        d["history"] = "../../past.parquet"
        path = write_spec(wd / "jobs", d)
    elif case == "bad-spec":
        d = simulated_spec_dict(name="bad")
        del d["budget"]
        path = write_spec(wd, d)
    else:
        path = write_spec(wd, simulated_spec_dict(name="bad"))
        (tmp_path / "rt.yaml").write_text("- a list\n")
        args += ["--runtime-env", str(tmp_path / "rt.yaml")]
    code, out = invoke("submit", str(path), *args)
    assert code == 2, out
    assert expected in out, out


def test_absolute_paths_and_packages_only_warn(tmp_path, monkeypatch):
    from prehoc_ray.cli import validate as v

    monkeypatch.setattr(v, "_package_dir", lambda module: None)
    spec = simulated_spec_dict(name="warn")
    spec["backend"] = "real"
    spec["tasks"] = [{"name": "qa", "path": "/cluster/data/qa.jsonl"}, {"name": "bbc", "builtin": "bbc_news"}]
    path = write_spec(tmp_path, spec)
    code, out = invoke("submit", str(path), "--working-dir", str(tmp_path), "--dry-run")
    assert code == 0, out
    assert "an absolute path must exist on the cluster nodes [warning]" in out
    assert "it must be installed on the cluster [warning]" in out


def test_unreachable_cluster_exits_1(tmp_path, monkeypatch):
    from ray_head import free_ports

    (port,) = free_ports(1)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")  # an explicit --address must win over it
    path = write_spec(tmp_path, simulated_spec_dict(name="nowhere"))
    code, out = invoke("submit", str(path), "--working-dir", str(tmp_path), "--address", f"http://127.0.0.1:{port}")
    assert code == 1, out
    assert f"cannot reach the Ray dashboard at http://127.0.0.1:{port}" in out
    code, out = invoke("status", "prehoc-x", "--address", f"http://127.0.0.1:{port}")
    assert code == 1 and "cannot reach" in out


def test_status_of_a_missing_spec_file_is_bad_input(tmp_path):
    code, out = invoke("status", str(tmp_path / "nope.yaml"))
    assert code == 2 and "job spec not found" in out


# ----- a real head ----------------------------------------------------------------------------


def _spec_for_cluster(tmp: Path, name: str) -> Path:
    src = REPO / "jobs" / "simulated.yaml"
    if src.is_file():
        d = yaml.safe_load(src.read_text())
        d["name"] = name
    else:
        d = simulated_spec_dict(name=name, probe_seconds=30)
    return write_spec(tmp, d, f"{name}.yaml")


@pytest.mark.slow
@pytest.mark.ray
def test_submit_wait_on_a_real_head(tmp_path, monkeypatch):
    from ray_head import RAY_ENV, ray_head

    for k, v in RAY_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    has_run = importlib.util.find_spec("prehoc_ray.cli.run") is not None
    wd = tmp_path / "wd"
    ok_spec = _spec_for_cluster(wd, "cluster-ok")
    bad_spec = _spec_for_cluster(wd, "cluster-fails")
    (tmp_path / "a-file").write_text("not a directory")
    out_dir = tmp_path / "out"
    t0 = time.monotonic()
    with ray_head() as (url, _env):
        t_head = time.monotonic() - t0
        common = ["--address", url, "--working-dir", str(wd), "--timeout", "420"]

        # A job that must fail whatever the driver does: its --out lies under a regular file.
        code, out = invoke("submit", str(bad_spec), *common, "--wait", "--out", str(tmp_path / "a-file" / "run"))
        assert code == 1, out
        assert "FAILED" in out and "prehoc-cluster-fails-" in out

        if not has_run:
            pytest.skip(
                "`prehoc-ray run` (prehoc_ray/cli/run.py, the execution layer) does not exist yet: "
                f"head started in {t_head:.0f} s, a failing job was reported with exit 1; the plan check needs it"
            )

        code, out = invoke("submit", str(ok_spec), *common, "--wait", "--out", str(out_dir))
        assert code == 0, out
        assert "SUCCEEDED" in out
        spec = load_job(ok_spec)
        sid = jobs_client.submission_id_for(spec)

        plan = json.loads((out_dir / "plan.json").read_text())
        assert plan["spec_hash"] == spec.spec_hash()
        assert len(plan["candidates"]) == len(spec.candidate_specs())
        assert {r["decision"] for r in plan["candidates"]} <= {"run", "skip", "probe more"}
        assert all(r["reason"] for r in plan["candidates"])
        t = plan["totals"]
        undecided = sum(r["full_cost_s"] for r in plan["candidates"] if r["decision"] == "probe more")
        assert t["saving_s"] == pytest.approx(
            max(0.0, t["all_full_cost_s"] - t["recommended_full_cost_s"] - undecided - t["probe_spend_s"])
        )
        assert (out_dir / "plan.parquet").is_file() and (out_dir / "report.html").is_file()

        # The same spec again: not a second job, its status instead.
        code, out = invoke("submit", str(ok_spec), *common, "--out", str(out_dir))
        assert code == 0, out
        assert "already submitted" in out and "SUCCEEDED" in out
        from ray.job_submission import JobSubmissionClient

        ids = [j.submission_id for j in JobSubmissionClient(url).list_jobs()]
        assert ids.count(sid) == 1

        code, out = invoke("status", str(ok_spec), "--address", url)
        assert code == 0 and "SUCCEEDED" in out and sid in out
        code, out = invoke("logs", sid, "--address", url)
        assert code == 0 and out.strip()


@pytest.mark.slow
def test_module_entrypoint_lists_the_commands():
    """`python -m prehoc_ray` is what the cluster runs: every command of this module is registered."""
    r = subprocess.run(
        [sys.executable, "-m", "prehoc_ray", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    if r.returncode != 0 and "ImportError" in r.stderr + r.stdout:
        pytest.skip(f"another command module does not import yet: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    for cmd in ("validate", "submit", "status", "logs", "report"):
        assert cmd in r.stdout
