"""A corpus of malformed inputs, each through the real CLI in its own process.

Every case writes its files to tmp_path and runs `python -m prehoc_ray ...` (the installed
command's code path: prehoc_ray.cli.main). Each must

  * exit 2 (bad input),
  * print exactly ONE line on stderr, naming the file and the field, row or line,
  * echo none of the file's contents: every case plants SECRET somewhere in its input (a
    value, a cell, the tail of a long key) and SECRET must appear in neither stdout nor stderr,
  * stay within 5 seconds and 300 MB.

How the limits are measured (one process per case, so nothing is shared between cases):
  * memory: the child is reaped with os.wait4(pid) (by a small launcher process: see LAUNCHER),
    whose rusage is that one child's own
    (ru_maxrss, the peak resident set, in KiB on Linux). RUSAGE_CHILDREN would not do: its
    ru_maxrss is the largest child ever reaped, so a small case after a big one reads big.
    RLIMIT_AS would not do either: pyarrow and numpy reserve far more address space than they
    touch, so an address-space cap fails healthy runs.
  * time: CPU time (user + sys, from the same rusage) must be under 5 s, always: it does not
    depend on what else the machine runs. Wall-clock must be under 5 s too; when the machine
    is oversubscribed (1-minute load average above the core count, as on a shared 2-core CI
    box) the wall-clock bound is scaled by load / cores, and a watchdog kills any case after
    60 s (a hang fails, it does not stall the suite).
Cases run concurrently (one per core) from a module fixture; each case is its own test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
SECRET = "PLANTED-SECRET-q7Zx94"
LIMIT_S = 5.0
LIMIT_RSS = 300 * 2**20
HANG_S = 60.0

pytestmark = pytest.mark.slow  # ~60 processes; about 30-60 s on two busy cores

BASE = """\
name: demo
tasks:
  - name: copy
    builtin: synthetic_copy
    eval_examples: 700
models:
  - name: tiny
    tiny: {arch: llama, hidden_size: 32}
budget:
  probe_seconds: 60
"""


@dataclass
class Case:
    name: str
    kind: str  # spec | history | trajectory | rundir
    build: Callable[[Path], tuple[list[str], list[str]]]  # tmp -> (argv, substrings the line must hold)


CASES: list[Case] = []


def case(kind: str) -> Callable:
    def register(fn: Callable[[Path], tuple[list[str], list[str]]]) -> Callable:
        CASES.append(Case(fn.__name__.removeprefix("c_"), kind, fn))
        return fn

    return register


def spec(tmp: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def validate(path: Path, *expect: str) -> tuple[list[str], list[str]]:
    return ["validate", str(path)], [str(path), *expect]


# ---- job specs ---------------------------------------------------------------------------------


@case("spec")
def c_billion_laughs_in_runtime_env(tmp):
    lines = [f'    l0: &l0 ["{SECRET}", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, 10):
        lines.append(f"    l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]")
    text = BASE + "cluster:\n  runtime_env:\n" + "\n".join(lines) + "\n"
    return validate(spec(tmp, text), "expands to more than", ":18:")


@case("spec")
def c_alias_to_itself(tmp):
    return validate(
        spec(tmp, BASE + f"cluster:\n  runtime_env: &r {{a: [*r], b: {SECRET}}}\n"), "refers to the collection"
    )


@case("spec")
def c_aliases_nest_too_deep(tmp):
    # each anchor 40 levels deep around the previous one: 400 levels once expanded
    lines = [f"    d0: &d0 {SECRET}"]
    for k in range(1, 11):
        lines.append(f"    d{k}: &d{k} " + "[" * 40 + f"*d{k - 1}" + "]" * 40)
    return validate(spec(tmp, BASE + "cluster:\n  runtime_env:\n" + "\n".join(lines) + "\n"), "levels deep")


@case("spec")
def c_duplicate_top_level_key(tmp):
    return validate(spec(tmp, BASE + f"description: {SECRET}\nname: other\n"), ":12:", "duplicate key 'name'", "line 1")


@case("spec")
def c_duplicate_nested_key(tmp):
    text = BASE.replace(
        "  probe_seconds: 60\n", f"  probe_seconds: 60\n  full_finetune_seconds: 1\n  probe_seconds: 61 # {SECRET}\n"
    )
    return validate(spec(tmp, text), ":12:", "duplicate key 'probe_seconds'")


@case("spec")
def c_not_utf8(tmp):
    path = tmp / "job.yaml"
    path.write_bytes(BASE.encode() + b"description: caf\xe9 " + SECRET.encode() + b"\n")
    return validate(path, ":11:", "not UTF-8")


@case("spec")
def c_control_character(tmp):
    return validate(spec(tmp, BASE + f"description: a\x00{SECRET}\n"), ":11:", "not allowed")


@case("spec")
def c_20000_nested_brackets(tmp):
    return validate(
        spec(tmp, BASE + "cluster: {runtime_env: {x: " + "[" * 20000 + SECRET + "]" * 20000 + "}}\n"),
        ":11:",
        "levels deep",
    )


@case("spec")
def c_20000_nested_mappings(tmp):
    return validate(
        spec(tmp, BASE + "description: " + "{a: " * 20000 + SECRET + "}" * 20000 + "\n"), ":11:", "levels deep"
    )


@case("spec")
def c_infinite_budget(tmp):
    return validate(
        spec(tmp, BASE.replace("probe_seconds: 60", "probe_seconds: .inf") + f"description: {SECRET}\n"),
        ":10:",
        "budget.probe_seconds",
        "finite",
    )


@case("spec")
def c_infinite_learning_rate(tmp):
    return validate(
        spec(tmp, BASE + f"configs:\n  - name: c # {SECRET}\n    learning_rate: .inf\n"),
        ":13:",
        "configs.0.learning_rate",
        "finite",
    )


@case("spec")
def c_nan_tolerance(tmp):
    return validate(
        spec(tmp, BASE + f"description: {SECRET}\nallocation:\n  tolerance: .nan\n"),
        ":13:",
        "allocation.tolerance",
        "finite",
    )


@case("spec")
def c_nan_baseline(tmp):
    return validate(
        spec(tmp, BASE + f"description: {SECRET}\nplan:\n  baselines:\n    copy: .nan\n"),
        ":14:",
        "plan.baselines.copy",
        "finite",
    )


@case("spec")
def c_absurd_full_steps(tmp):
    return validate(
        spec(tmp, BASE + f"configs:\n  - name: c # {SECRET}\n    full_steps: 1.0e+30\n"),
        ":13:",
        "configs.0.full_steps",
        "less than or equal to 100000000",
    )


@case("spec")
def c_absurd_seeds(tmp):
    return validate(
        spec(tmp, BASE + f"description: {SECRET}\nallocation:\n  seeds: 1e11\n"),
        ":13:",
        "allocation.seeds",
        "less than or equal to 1000",
    )


@case("spec")
def c_absurd_candidate_count(tmp):
    tasks = "".join(f"  - {{name: t{i}, builtin: synthetic_copy, eval_examples: 700}}\n" for i in range(50))
    models = "".join(f"  - {{name: m{i}, tiny: {{arch: llama}}}}\n" for i in range(50))
    configs = "".join(f"  - {{name: c{i}}}\n" for i in range(50))
    text = f"name: demo\ndescription: {SECRET}\ntasks:\n{tasks}models:\n{models}configs:\n{configs}budget: {{probe_seconds: 1}}\n"
    return validate(spec(tmp, text), "tasks x models x configs", "125,000 candidates")


@case("spec")
def c_spec_is_a_directory(tmp):
    (tmp / "job.yaml").mkdir()
    (tmp / "job.yaml" / "inside.txt").write_text(SECRET)
    return validate(tmp / "job.yaml", "is a directory")


@case("spec")
def c_spec_missing(tmp):
    (tmp / "other.yaml").write_text(SECRET)
    return validate(tmp / "job.yaml", "not found")


@case("spec")
def c_credentials_file_as_spec(tmp):
    # /etc/shadow- or ~/.netrc-like: every key unknown, every value a secret
    text = "".join(f"user{i}: {SECRET}{i}\n" for i in range(20))
    return validate(spec(tmp, text, "shadow"), "not a job spec")


@case("spec")
def c_unknown_key_with_secret_value(tmp):
    text = BASE.replace("  probe_seconds: 60\n", f"  probe_seconds: 60\n  api_token: {SECRET}\n")
    return validate(spec(tmp, text), ":11:", "budget.api_token: unknown key")


@case("spec")
def c_long_unknown_key_is_truncated(tmp):
    return validate(spec(tmp, BASE + "x" * 60 + SECRET + ": 1\n"), ":11:", "unknown key", "xxxxxxxx")


@case("spec")
def c_unknown_candidate_name_is_truncated(tmp):
    text = BASE + f"candidates:\n  - [copy, {'m' * 50}{SECRET}, default]\n"
    return validate(spec(tmp, text), ":12:", "candidates[0]: unknown model")


@case("spec")
def c_integer_of_5000_digits(tmp):
    return validate(
        spec(tmp, BASE + f"description: {SECRET}\nallocation:\n  seed: {'9' * 5000}\n"), ":13:", "cannot read"
    )


@case("spec")
def c_impossible_date(tmp):
    return validate(
        spec(tmp, BASE + f"description: {SECRET}\nallocation:\n  seed: 2024-13-45\n"), ":13:", "cannot read"
    )


@case("spec")
def c_unclosed_quote(tmp):
    return validate(spec(tmp, BASE + f'description: "{SECRET}\n'), "not valid YAML")


@case("spec")
def c_bad_indentation(tmp):
    return validate(spec(tmp, BASE + f"plan:\n  mode: max\n    confidence: {SECRET}\n"), ":13:", "not valid YAML")


@case("spec")
def c_spec_over_one_mebibyte(tmp):
    return validate(spec(tmp, BASE + f"description: {SECRET}\n" + ("# padding\n" * 120_000)), "larger than")


@case("spec")
def c_top_level_list(tmp):
    return validate(spec(tmp, f"- {SECRET}\n- name: demo\n"), "expected a mapping at the top level")


# ---- history files (a spec's `history:`, read by validate) -------------------------------------


def with_history(tmp: Path, name: str) -> tuple[Path, Path]:
    return spec(tmp, BASE + f"history: {name}\n"), tmp / name


HIST_HEADER = "candidate,step,value,group,final,note\n"


def hist_rows(n: int = 9) -> str:
    return "".join(f"r{i},{s},{0.5 + s / 1000},copy,0.7,ok\n" for i in range(n) for s in (10, 20, 30))


@case("history")
def c_history_text_step(tmp):
    path, hist = with_history(tmp, "past.csv")
    hist.write_text(HIST_HEADER + "r0,10,0.5,copy,0.7,ok\nr0,twenty,0.6,copy,0.7," + SECRET + "\n")
    return ["validate", str(path)], [str(hist), "history", "column 'step' row 2"]


@case("history")
def c_history_without_finals(tmp):
    path, hist = with_history(tmp, "past.csv")
    hist.write_text(HIST_HEADER + hist_rows().replace(",0.7,", ",,").replace(",ok", "," + SECRET))
    return ["validate", str(path)], [str(hist), "column 'final' has no value"]


@case("history")
def c_history_deeply_nested_jsonl(tmp):
    path, hist = with_history(tmp, "past.jsonl")
    hist.write_text(
        '{"candidate": "r0", "step": 10, "value": 0.5, "final": 0.7}\n'
        '{"candidate": "r0", "step": 20, "value": ' + '{"x": ' * 100_000 + f'"{SECRET}"' + "}" * 100_000 + "}\n"
    )
    return ["validate", str(path)], [str(hist), "line 2", "levels deep"]


@case("history")
def c_history_corrupt_parquet(tmp):
    path, hist = with_history(tmp, "past.parquet")
    hist.write_bytes(b"PAR1" + SECRET.encode() * 10 + b"PAR1")
    return ["validate", str(path)], [str(hist), "cannot read as parquet"]


@case("history")
def c_history_missing(tmp):
    path, hist = with_history(tmp, "past.csv")
    (tmp / "elsewhere.csv").write_text(SECRET)
    return ["validate", str(path)], [str(hist), "file not found"]


@case("history")
def c_history_row_with_extra_cells(tmp):
    path, hist = with_history(tmp, "past.csv")
    hist.write_text(HIST_HEADER + hist_rows(2) + f"r9,10,0.5,copy,0.7,ok,{SECRET},{SECRET}\n")
    return ["validate", str(path)], [str(hist), "line 8", "expected 6 cells"]


@case("history")
def c_history_is_a_directory(tmp):
    path, hist = with_history(tmp, "past.csv")
    hist.mkdir()
    (hist / "x.csv").write_text(SECRET)
    return ["validate", str(path)], [str(hist), "is a directory"]


@case("history")
def c_history_inconsistent_final(tmp):
    path, hist = with_history(tmp, "past.csv")
    hist.write_text(HIST_HEADER + f"r0,10,0.5,copy,0.7,{SECRET}\nr0,20,0.6,copy,0.9,ok\n")
    return ["validate", str(path)], [str(hist), "column 'final' row 2"]


# ---- trajectory tables (analyze) ---------------------------------------------------------------


def analyze(tmp: Path, path: Path, *expect: str, extra: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    return ["analyze", str(path), "--out", str(tmp / "out"), *extra], [str(path), *expect]


def curve_rows(step_last: str = "40", horizon: str | None = None) -> str:
    h = f",{horizon}" if horizon is not None else ""
    return "".join(
        f"c{i},{s},{0.5 + 0.01 * k},{SECRET if k == 0 else 'ok'}{h}\n"
        for i in range(3)
        for k, s in enumerate(["10", "20", "30", step_last])
    )


@case("trajectory")
def c_step_1e300(tmp):
    path = tmp / "t.csv"
    path.write_text("candidate,step,value,note\n" + curve_rows("1e300"))
    return analyze(tmp, path, "column 'step' row 4", "at most 1e+12")


@case("trajectory")
def c_step_past_horizon_column(tmp):
    path = tmp / "t.csv"
    path.write_text("candidate,step,value,note,horizon\n" + curve_rows("50000", horizon="1000"))
    return analyze(tmp, path, "column 'step' row 4", "horizon")


@case("trajectory")
def c_step_past_horizon_option(tmp):
    path = tmp / "t.csv"
    path.write_text("candidate,step,value,note\n" + curve_rows("4000"))
    return analyze(tmp, path, "column 'step' row 4", "--horizon", extra=("--horizon", "100"))


@case("trajectory")
def c_deeply_nested_json_array(tmp):
    path = tmp / "t.json"
    path.write_text("[" * 100_000 + f'"{SECRET}"' + "]" * 100_000)
    return analyze(tmp, path, "line 1", "levels deep")


@case("trajectory")
def c_deeply_nested_jsonl_object(tmp):
    # pyarrow's JSON reader dies of SIGSEGV on this one: it must never see it
    path = tmp / "t.jsonl"
    path.write_text(
        '{"candidate": "a", "step": 1, "value": 0.1}\n{"candidate": "a", "step": 2, "value": '
        + '{"x": ' * 100_000
        + f'"{SECRET}"'
        + "}" * 100_000
        + "}\n"
    )
    return analyze(tmp, path, "line 2", "levels deep")


@case("trajectory")
def c_csv_row_with_extra_cells(tmp):
    path = tmp / "t.csv"
    path.write_text("candidate,step,value\na,1,0.1\na,2,0.2\na,3,0.3," + SECRET + "\n")
    return analyze(tmp, path, "line 4", "expected 3 cells")


@case("trajectory")
def c_credentials_file_as_table(tmp):
    path = tmp / "shadow.csv"
    path.write_text(f"root:$6$saltsalt${'h' * 30}{SECRET}:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n")
    return analyze(tmp, path, "missing required column 'candidate'")


@case("trajectory")
def c_not_utf8_jsonl(tmp):
    path = tmp / "t.jsonl"
    path.write_bytes(
        b'{"candidate": "a", "step": 1, "value": 0.1}\n{"candidate": "\xff\xfe'
        + SECRET.encode()
        + b'", "step": 2, "value": 0.2}\n'
    )
    return analyze(tmp, path, "column 'candidate' row 2", "UTF-8")


@case("trajectory")
def c_long_text_value_is_truncated(tmp):
    path = tmp / "t.csv"
    path.write_text("candidate,step,value\na,1,0.1\na,2," + "v" * 60 + SECRET + "\n")
    return analyze(tmp, path, "column 'value' row 2", "vvvv")


@case("trajectory")
def c_corrupt_parquet(tmp):
    path = tmp / "t.parquet"
    pq.write_table(
        pa.table({"candidate": ["a"] * 3, "step": [1.0, 2.0, 3.0], "value": [0.1, 0.2, 0.3], "note": [SECRET] * 3}),
        path,
    )
    path.write_bytes(path.read_bytes()[:-30])
    return analyze(tmp, path, "cannot read as parquet")


@case("trajectory")
def c_json_array_of_numbers(tmp):
    path = tmp / "t.json"
    path.write_text(f'[{{"candidate": "a", "step": 1, "value": 0.1, "note": "{SECRET}"}}, 2]')
    return analyze(tmp, path, "row 2", "expected a JSON object")


@case("trajectory")
def c_invalid_jsonl_line(tmp):
    path = tmp / "t.jsonl"
    path.write_text(
        f'{{"candidate": "a", "step": 1, "value": 0.1}}\n{{"candidate": "a", "step": 2, "value": {SECRET}}}\n'
    )
    return analyze(tmp, path, "line 2", "invalid JSON")


@case("trajectory")
def c_duplicate_step(tmp):
    path = tmp / "t.csv"
    path.write_text(f"candidate,step,value,note\na,1,0.1,{SECRET}\na,2,0.2,ok\na,2,0.3,ok\n")
    return analyze(tmp, path, "column 'step' row 3", "one row per")


@case("trajectory")
def c_table_is_a_directory(tmp):
    path = tmp / "t.csv"
    path.mkdir()
    (path / "inner.csv").write_text(SECRET)
    return analyze(tmp, path, "is a directory")


# ---- run directories (run --resume, report) ----------------------------------------------------


def run_dir_with_manifest(tmp: Path, manifest: str) -> tuple[Path, Path]:
    out = tmp / "run"
    out.mkdir()
    (out / "manifest.json").write_text(manifest)
    return spec(tmp, BASE), out


def resume(job: Path, out: Path, *expect: str) -> tuple[list[str], list[str]]:
    return ["run", str(job), "--out", str(out), "--resume"], [*expect]


@case("rundir")
def c_resume_manifest_not_json(tmp):
    job, out = run_dir_with_manifest(tmp, '{"spec_hash": "' + SECRET + '", ')
    return resume(job, out, str(out / "manifest.json"), "invalid JSON on line 1")


@case("rundir")
def c_resume_manifest_a_list(tmp):
    job, out = run_dir_with_manifest(tmp, json.dumps([SECRET]))
    return resume(job, out, str(out / "manifest.json"), "expected a JSON object")


@case("rundir")
def c_resume_manifest_bad_status(tmp):
    job, out = run_dir_with_manifest(tmp, json.dumps({"spec_hash": "0" * 64, "created_at": "x", "status": SECRET}))
    return resume(job, out, str(out / "manifest.json"), "field 'status'")


@case("rundir")
def c_resume_manifest_wrong_type(tmp):
    job, out = run_dir_with_manifest(tmp, json.dumps({"spec_hash": 12345, "created_at": SECRET}))
    return resume(job, out, str(out / "manifest.json"), "field 'spec_hash'")


@case("rundir")
def c_resume_manifest_unknown_field(tmp):
    job, out = run_dir_with_manifest(tmp, json.dumps({"spec_hash": "0" * 64, "created_at": "x", "token": SECRET}))
    return resume(job, out, str(out / "manifest.json"), "unknown manifest field 'token'")


@case("rundir")
def c_resume_manifest_not_utf8(tmp):
    job, out = run_dir_with_manifest(tmp, "")
    (out / "manifest.json").write_bytes(b'{"spec_hash": "\xff' + SECRET.encode() + b'"}')
    return resume(job, out, str(out / "manifest.json"), "not UTF-8")


@case("rundir")
def c_resume_run_of_another_spec(tmp):
    job, out = run_dir_with_manifest(tmp, json.dumps({"spec_hash": "0" * 64, "created_at": "x", "info": {"k": SECRET}}))
    return resume(job, out, str(out / "manifest.json"), "belongs to spec")


@case("rundir")
def c_run_into_a_finished_run_without_resume(tmp):
    job, out = run_dir_with_manifest(tmp, json.dumps({"spec_hash": "0" * 64, "created_at": "x", "info": {"k": SECRET}}))
    return ["run", str(job), "--out", str(out)], [str(out), "already holds a run"]


@case("rundir")
def c_run_out_is_a_file(tmp):
    job = spec(tmp, BASE)
    (tmp / "run").write_text(SECRET)
    return resume(job, tmp / "run", str(tmp / "run"), "not a directory")


@case("rundir")
def c_resume_with_malformed_spec(tmp):
    job = spec(tmp, BASE + f"description: {SECRET}\nname: again\n")
    (tmp / "run").mkdir()
    return resume(job, tmp / "run", str(job), "duplicate key 'name'")


def report_dir(tmp: Path) -> Path:
    out = tmp / "run"
    out.mkdir()
    (out / "job.yaml").write_text(BASE)
    return out


@case("rundir")
def c_report_corrupt_candidates(tmp):
    out = report_dir(tmp)
    (out / "candidates.parquet").write_bytes(b"PAR1" + SECRET.encode() * 20)
    return ["report", str(out)], [str(out / "candidates.parquet"), "not a readable Parquet table"]


@case("rundir")
def c_report_truncated_spend(tmp):
    out = report_dir(tmp)
    pq.write_table(
        pa.table({"round": [1, 2], "candidate": [SECRET, SECRET], "cost_s": [1.0, 2.0]}), out / "spend.parquet"
    )
    (out / "spend.parquet").write_bytes((out / "spend.parquet").read_bytes()[:-40])
    return ["report", str(out)], [str(out / "spend.parquet"), "not a readable Parquet table"]


@case("rundir")
def c_report_not_a_run_directory(tmp):
    out = tmp / "run"
    out.mkdir()
    (out / "notes.txt").write_text(SECRET)
    return ["report", str(out)], [str(out), "not a run directory"]


@case("rundir")
def c_report_on_a_file(tmp):
    (tmp / "run").write_text(SECRET)
    return ["report", str(tmp / "run")], [str(tmp / "run"), "not a directory"]


@case("rundir")
def c_report_replan_with_malformed_job(tmp):
    out = report_dir(tmp)
    (out / "job.yaml").write_text(BASE + f"plan:\n  baselines:\n    copy: .nan\n  mode: max # {SECRET}\n")
    return ["report", str(out), "--replan"], [str(out / "job.yaml"), ":13:", "plan.baselines.copy"]


@case("rundir")
def c_report_with_alias_bomb_spec(tmp):
    out = report_dir(tmp)
    lines = [f'    l0: &l0 ["{SECRET}", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, 10)]
    bomb = spec(tmp, BASE + "cluster:\n  runtime_env:\n" + "\n".join(lines) + "\n", "bomb.yaml")
    return ["report", str(out), "--spec", str(bomb)], [str(bomb), "expands to more than"]


# ---- the runner --------------------------------------------------------------------------------


@dataclass
class Outcome:
    argv: list[str]
    expect: list[str]
    code: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    maxrss: int  # bytes
    load: float  # the higher 1-minute load average of the case's start and end


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREHOC_RAY_DEBUG", "RAY_ADDRESS", "PREHOC_SIM_OPTIONS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    return env


# Each case is forked by this small launcher, not by pytest: Linux carries a process's peak RSS
# across fork and exec, so a child forked straight from a pytest that has loaded torch would
# report pytest's gigabyte as its own peak. The launcher is a fresh interpreter without site
# packages (a few MB), and it reaps the case with wait4 for the case's own rusage.
LAUNCHER = r"""
import json, os, signal, sys, time
spec = json.loads(sys.stdin.read())
out = os.open(spec["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
err = os.open(spec["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.chdir(spec["cwd"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    finally:
        os._exit(127)
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.alarm(spec["hang_s"])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall": time.monotonic() - t0,
                  "cpu": usage.ru_utime + usage.ru_stime, "maxrss": usage.ru_maxrss * 1024}))
"""


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str, float, float, int]:
    """(exit code, stdout, stderr, wall s, cpu s, peak RSS bytes) of `python -m prehoc_ray ARGV`."""
    out_path, err_path = cwd / ".stdout", cwd / ".stderr"
    spec = {
        "argv": [sys.executable, "-m", "prehoc_ray", *argv],
        "cwd": str(cwd),
        "env": _env(),
        "out": str(out_path),
        "err": str(err_path),
        "hang_s": int(HANG_S),
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=HANG_S + 30,
        check=True,
    )
    r = json.loads(done.stdout)
    return (
        r["code"],
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        r["wall"],
        r["cpu"],
        r["maxrss"],
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    def one(c: Case) -> tuple[str, Outcome]:
        tmp = tmp_path_factory.mktemp(c.name[:40])
        argv, expect = c.build(tmp)
        load = os.getloadavg()[0]
        result = run_cli(argv, tmp)
        return c.name, Outcome(argv, expect, *result, load=max(load, os.getloadavg()[0]))

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return dict(pool.map(one, CASES))


def test_the_corpus_is_large_and_covers_every_kind():
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 40 and kinds == {"spec", "history", "trajectory", "rundir"}
    assert len({c.name for c in CASES}) == len(CASES)


def _wall_limit(load: float) -> float:
    """5 s; on an oversubscribed machine 5 s x (load / cores): the case's share of a core."""
    return LIMIT_S * max(1.0, load / (os.cpu_count() or 1))


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_malformed_input_is_one_line_exit_2_within_limits(outcomes, name):
    o = outcomes[name]
    shown = f"argv={o.argv}\nexit={o.code}\nstderr={o.stderr[-2000:]!r}\nstdout={o.stdout[-500:]!r}"
    assert o.code == 2, shown
    lines = [line for line in o.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    for text in o.expect:
        assert text in lines[0], (text, shown)
    assert SECRET not in o.stderr and SECRET not in o.stdout, shown
    assert "Traceback" not in o.stderr, shown
    assert o.cpu_s < LIMIT_S, f"{o.cpu_s:.2f} CPU-s\n{shown}"
    limit = _wall_limit(o.load)
    assert o.wall_s < limit, f"{o.wall_s:.2f} s wall (limit {limit:.1f} s at load {o.load:.1f})\n{shown}"
    assert o.maxrss < LIMIT_RSS, f"peak RSS {o.maxrss / 2**20:.0f} MiB\n{shown}"


def test_the_limits_are_measured_per_process(tmp_path):
    """The measurement itself: a child that touches 400 MB reads as 400 MB, the next small one
    as small (RUSAGE_CHILDREN would keep reporting the big one)."""
    code = "import sys; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); sys.exit(2)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, _, big = os.wait4(proc.pid, 0)
    proc.returncode = 2
    assert big.ru_maxrss * 1024 > 400 * 2**20
    code, _, _, _, _, rss = run_cli(["--help"], tmp_path)
    assert code == 0 and rss < 200 * 2**20
    # and a big test process does not lend its own peak to the cases it starts
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    code, _, _, _, _, rss = run_cli(["--help"], tmp_path)
    del ballast
    assert code == 0 and rss < 200 * 2**20, f"{rss / 2**20:.0f} MiB"
