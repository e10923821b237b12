"""`prehoc-ray history import` end to end: real Tune / Trainer / tracker sources in, a file out
that a job's `history:` (`prehoc-ray validate`, the driver's loader) and `prehoc-ray analyze`
take as it is; bad input is one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from prehoc_ray.cli import EXIT_BAD_INPUT, _register, app
from prehoc_ray.io.history import coverage_problems, load_history
from tests.io.test_history_import import (
    HF_MAX_STEPS,
    TUNE_LRS,
    TUNE_RUNS,
    _wandb_like,
    hf_runs,
    tune_experiment,
)

_register()
REPO = Path(__file__).resolve().parents[2]
WANDB_MAP = "candidate=run_id,step=_step,value=eval/acc,group=task,static_lr=lr"


def _invoke(*args: object):
    return CliRunner().invoke(app, ["history", "import", *map(str, args)])


def _lines(result) -> list[str]:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout.strip().splitlines()


@pytest.mark.slow
@pytest.mark.ray
def test_tune_experiment_and_tracker_export_into_one_history_a_job_and_analyze_take(
    tmp_path_factory, tmp_path: Path
) -> None:
    exp = tune_experiment(tmp_path_factory)
    export = tmp_path / "wandb.csv"
    _wandb_like(export)
    out = tmp_path / "past.parquet"
    lines = _lines(
        _invoke(
            exp,
            export,
            "--metric",
            "acc",
            "--seed-key",
            "run/seed",
            "--group-by",
            "task",
            "--map",
            WANDB_MAP,
            "--out",
            out,
        )
    )
    n_tune = len(TUNE_RUNS) - 1  # one diverged
    points = (n_tune - 1) * 12 + 5  # one stopped after 5 iterations
    assert (
        lines[0]
        == f"tune:{exp}: {n_tune} trials read ({points} points, {n_tune - 1} with a final), 1 skipped (no 'acc' in result.json (reported there: loss))"
    )
    assert lines[1].startswith(f"tracker:{export}: 3 runs read (8 points, 2 with a final), 0 skipped; ")
    assert lines[2] == (
        f"wrote {points + 8} rows, {len(TUNE_LRS) - 1 + 3} candidates ({len(TUNE_LRS) - 2 + 2} with a final), "
        f"groups rte, sst2, static columns static_diverges, static_lr, static_run/lr, static_steps, static_stops_early to {out}"
    )
    assert len(lines) == 3

    # the job's code path: load_history (what the driver calls), and `prehoc-ray validate` on a job naming it
    hist = load_history(out)
    assert coverage_problems(hist, ["sst2"]) == []
    job = yaml.safe_load((REPO / "jobs" / "simulated.yaml").read_text())
    job["tasks"][0]["name"] = "sst2"
    job["history"] = str(out)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    checked = CliRunner().invoke(app, ["validate", str(tmp_path / "job.yaml")])
    assert checked.exit_code == 0, checked.output
    assert "history: task 'copy': 0 past run(s)" in checked.output  # the tasks the file does not cover
    assert "history: task 'sst2'" not in checked.output  # the one it does

    analyzed = CliRunner().invoke(app, ["analyze", str(out), "--out", str(tmp_path / "analysis"), "--n-boot", "0"])
    assert analyzed.exit_code == 0, (analyzed.output, analyzed.exception)
    predictions = pq.read_table(tmp_path / "analysis" / "predictions.parquet")
    assert predictions.num_rows == len(TUNE_LRS) - 1 + 3
    assert sorted(set(predictions.column("group").to_pylist())) == ["rte", "sst2"]


@pytest.mark.slow
def test_trainer_output_dirs_to_csv(tmp_path_factory, tmp_path: Path) -> None:
    root = hf_runs(tmp_path_factory)
    out = tmp_path / "hf.csv"
    lines = _lines(_invoke(f"hf:{root}", "--metric", "accuracy", "--group", "sst2", "--out", out))
    assert lines == [
        f"hf:{root}: 2 runs read (6 points, 1 with a final), 0 skipped",
        f"wrote 6 rows, 2 candidates (1 with a final), groups sst2 to {out}",
    ]
    runs = {c.candidate: c for c in load_history(out).per_candidate()}
    assert runs["full"].horizon == runs["stopped"].horizon == HF_MAX_STEPS
    assert runs["stopped"].final != runs["stopped"].final  # NaN: stopped before max_steps


def test_no_final_is_written_with_a_note(tmp_path: Path) -> None:
    export = tmp_path / "runs.jsonl"
    export.write_text('{"run": "a", "step": 1, "acc": 0.5}\n{"run": "a", "step": 2, "acc": 0.6}\n')
    lines = _lines(
        _invoke(export, "--map", "candidate=run,value=acc", "--horizon", "10", "--out", tmp_path / "h.jsonl")
    )
    assert lines[-1].startswith("note: no run reached its horizon, so no row has a final")
    assert (tmp_path / "h.jsonl").read_text().count("\n") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{d}/nothing", "--out", "{d}/h.parquet"],
            "error: {d}/nothing: not found; expected a Ray Tune experiment directory",
        ),
        (["{d}/runs.csv", "--out", "{d}/h.txt"], "error: {d}/h.txt: unknown file type '.txt'; expected one of"),
        (
            ["{d}/runs.csv", "--map", "candidate", "--out", "{d}/h.csv"],
            "error: --map 'candidate': expected TARGET=COLUMN",
        ),
        (
            ["{d}/runs.csv", "--map", "candidate=who", "--out", "{d}/h.csv"],
            "error: tracker:{d}/runs.csv: no column 'who' (for candidate); columns in the file: run, step, acc",
        ),
        (
            ["{d}/runs.csv", "--map", "candidate=run", "--out", "{d}/h.csv"],
            "error: tracker:{d}/runs.csv: no column for 'value'",
        ),
        (
            ["{d}/runs.csv", "--metric", "acc", "--map", "candidate=run", "--horizon", "-3", "--out", "{d}/h.csv"],
            "error: --horizon: expected a number of steps > 0, got -3",
        ),
        (
            ["{d}/runs.csv", "--metric", "loss", "--map", "candidate=run", "--out", "{d}/h.csv"],
            "error: tracker:{d}/runs.csv: no column 'loss' (for value)",
        ),
        (
            ["{d}/empty.csv", "--metric", "acc", "--map", "candidate=run", "--out", "{d}/h.csv"],
            "error: no run to write: every source was empty or skipped",
        ),
        (["--out", "{d}/h.csv"], "error: Missing argument 'SOURCE...'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "runs.csv").write_text("run,step,acc\na,1,0.5\na,2,0.6\n")
    (tmp_path / "empty.csv").write_text("run,step,acc\na,1,\n")
    result = _invoke(*[a.format(d=tmp_path) for a in args])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    err = result.stderr.strip()
    assert err.startswith(message.format(d=tmp_path)), err
    assert "\n" not in err
    assert not (tmp_path / "h.csv").exists()


def test_the_source_lines_still_print_when_nothing_is_left(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("run,step,acc\na,1,\nb,0,0.5\n")
    result = _invoke(tmp_path / "empty.csv", "--metric", "acc", "--map", "candidate=run", "--out", tmp_path / "h.csv")
    assert result.exit_code == EXIT_BAD_INPUT
    assert result.stdout.strip() == (
        f"tracker:{tmp_path / 'empty.csv'}: 0 runs read (0 points, 0 with a final), 2 skipped "
        "(no finite 'acc': 2); 1 row without a finite value ignored; 1 row with no step > 0 ignored"
    )
