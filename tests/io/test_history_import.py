"""Past runs imported from where teams keep them (issue 17 item 2), on sources made for real.

The Ray Tune experiment comes from a real `tune.Tuner` run and the Trainer output directories
from real `transformers.Trainer` runs of a tiny BERT built from a config: the readers must
hold on the files those libraries write today, not on files written the way we think they
look. The tracker exports are written here, shaped like a Weights & Biases history export
(sparse metric column, `_step` from 0). Every imported table is read back through the job's
`history:` loader (prehoc_ray.io.history.load_history), unchanged.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # pa.compute below
import pyarrow.csv as pa_csv
import pytest

from prehoc_ray.core.population import MIN_POPULATION
from prehoc_ray.io import read_trajectories, write_table
from prehoc_ray.io.history import coverage_problems, load_history
from prehoc_ray.io.history_runs import HistoryImportError, ImportOptions
from prehoc_ray.io.history_sources import import_history, read_sources, source_kind
from prehoc_ray.io.history_tracker import parse_column_map

# --------------------------------------------------------------------------------------------
# Sources made for real (built once per session; the CLI tests reuse them)

TUNE_STEPS = 12
TUNE_LRS = [0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.13, 0.16, 0.2, 0.3, 0.5]
DIVERGES = 0.5  # reports only a NaN loss: no 'acc' at all -> skipped
STOPS_EARLY = 0.3  # stops after 5 of 12 iterations -> kept, no final
TWO_SEEDS = (0.02, 0.1)  # also run with seed 1 (the others with seed 0 only: fewer trials on 2 cores)
TUNE_RUNS = [(lr, 0) for lr in TUNE_LRS] + [(lr, 1) for lr in TWO_SEEDS]
_BUILT: dict[str, Path] = {}


def tune_acc(lr: float, seed: int, step: int) -> float:
    """What the trainable reports: a saturating curve per learning rate, a small seed offset."""
    return 0.5 + 0.4 * (1.0 - math.exp(-lr * step)) + 0.01 * seed


def tune_experiment(factory: pytest.TempPathFactory) -> Path:
    """A real Tune experiment directory: a function trainable over 11 learning rates, two of
    them with a second seed; the grid's points are nested dicts (config keys run/lr, run/seed)."""
    if "tune" in _BUILT:
        return _BUILT["tune"]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import tune

    def trainable(config: dict) -> None:
        import math as m

        lr, seed = config["run"]["lr"], config["run"]["seed"]
        for step in range(1, config["steps"] + 1):
            if lr == config["diverges"]:
                tune.report({"loss": float("nan")})
                continue
            tune.report({"acc": 0.5 + 0.4 * (1.0 - m.exp(-lr * step)) + 0.01 * seed, "loss": 1.0 / step})
            if lr == config["stops_early"] and step == 5:
                return

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        storage = factory.mktemp("tune")
        tuner = tune.Tuner(
            trainable,
            param_space={
                "run": tune.grid_search([{"lr": lr, "seed": seed} for lr, seed in TUNE_RUNS]),
                "task": "sst2",
                "steps": TUNE_STEPS,
                "diverges": DIVERGES,
                "stops_early": STOPS_EARLY,
            },
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(name="exp", storage_path=str(storage), verbose=0),
        )
        grid = tuner.fit()
        assert not grid.errors, grid.errors
    finally:
        if started:
            ray.shutdown()
    _BUILT["tune"] = storage / "exp"
    return _BUILT["tune"]


HF_MAX_STEPS = 12
HF_EVAL_EVERY = 3
HF_STOP_AT = 6


def hf_runs(factory: pytest.TempPathFactory) -> Path:
    """Two real Trainer output directories under one parent: `full` trained to max_steps and
    saved its state; `stopped` was stopped by a callback at step 6 (its checkpoints only).
    Each directory's `expected.json` holds the eval_accuracy points the Trainer logged."""
    if "hf" in _BUILT:
        return _BUILT["hf"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= HF_STOP_AT:
                control.should_training_stop = True
            return control

    rng = np.random.default_rng(0)

    def data(n: int) -> list[dict]:
        rows = []
        for _ in range(n):
            ids = rng.integers(5, 50, size=8)
            rows.append(
                {
                    "input_ids": torch.tensor(ids),
                    "attention_mask": torch.ones(8, dtype=torch.long),
                    "labels": torch.tensor(int(ids[0] > 27)),
                }
            )
        return rows

    def accuracy(pred) -> dict:
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    root = factory.mktemp("hf")
    train, evals = data(48), data(32)
    for name, callbacks in (("full", []), ("stopped", [StopAt()])):
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=2,
        )
        args = TrainingArguments(
            output_dir=str(root / name),
            max_steps=HF_MAX_STEPS,
            per_device_train_batch_size=8,
            eval_strategy="steps",
            eval_steps=HF_EVAL_EVERY,
            save_strategy="steps",
            save_steps=HF_EVAL_EVERY,
            logging_steps=HF_EVAL_EVERY,
            report_to=[],
            use_cpu=True,
            learning_rate=1e-2,
            seed=0,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=BertForSequenceClassification(cfg),
            args=args,
            train_dataset=train,
            eval_dataset=evals,
            compute_metrics=accuracy,
            callbacks=callbacks,
        )
        trainer.train()
        if name == "full":
            trainer.save_state()
        logged = [[e["step"], e["eval_accuracy"]] for e in trainer.state.log_history if "eval_accuracy" in e]
        (root / name / "expected.json").write_text(
            json.dumps({"points": logged, "global_step": trainer.state.global_step})
        )
    _BUILT["hf"] = root
    return root


@pytest.fixture(scope="module")
def tune_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tune_experiment(tmp_path_factory)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_runs(tmp_path_factory)


def _rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def _per_run(table: pa.Table) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for row in _rows(table):
        out.setdefault((row["candidate"], row["seed"]), []).append(row)
    return out


def _roundtrip(table: pa.Table, path: Path):
    """Write as the CLI does and load through the job's `history:` loader."""
    write_table(table, path)
    return load_history(path)


# --------------------------------------------------------------------------------------------
# Ray Tune


@pytest.mark.slow
@pytest.mark.ray
def test_tune_experiment_imports_seeds_finals_and_static_config(tune_dir: Path, tmp_path: Path) -> None:
    options = ImportOptions(metric="acc", seed_key="run/seed", group_by="task")
    table, reports = import_history([str(tune_dir)], options)
    assert len(reports) == 1
    line = reports[0].line()
    n_read = len(TUNE_RUNS) - 1
    assert line.startswith(f"tune:{tune_dir}: {n_read} trials read")
    assert "1 skipped (no 'acc' in result.json (reported there: loss))" in line
    assert f"{n_read - 1} with a final" in line

    runs = _per_run(table)
    assert sorted(s for _, s in runs) == sorted(s for lr, s in TUNE_RUNS if lr != DIVERGES)
    name = "diverges={d!r},run/lr={lr!r},steps={n},stops_early={e!r},task=sst2"
    assert {c for c, _ in runs} == {
        name.format(d=DIVERGES, lr=lr, n=TUNE_STEPS, e=STOPS_EARLY) for lr in TUNE_LRS if lr != DIVERGES
    }
    assert set(table.column_names) >= {"static_run/lr", "static_steps"} and "static_run/seed" not in table.column_names
    for (cand, seed), rows in runs.items():
        lr = rows[0]["static_run/lr"]
        assert f"run/lr={lr!r}" in cand
        assert all(r["group"] == "sst2" and r["horizon"] == TUNE_STEPS for r in rows)
        steps = [r["step"] for r in rows]
        assert steps == sorted(steps) and steps[0] == 1
        np.testing.assert_allclose([r["value"] for r in rows], [tune_acc(lr, seed, int(s)) for s in steps])
        if lr == STOPS_EARLY:  # trained 5 of the group's 12 iterations: a curve, no final
            assert steps[-1] == 5 and all(r["final"] is None for r in rows)
        else:
            assert steps[-1] == TUNE_STEPS and all(
                r["final"] == pytest.approx(tune_acc(lr, seed, TUNE_STEPS)) for r in rows
            )

    hist = _roundtrip(table, tmp_path / "tune.parquet")
    assert len(hist.per_candidate()) == len(TUNE_LRS) - 1
    assert coverage_problems(hist, ["sst2"]) == []  # >= MIN_POPULATION finals in the family
    assert len(TUNE_LRS) - 2 >= MIN_POPULATION


@pytest.mark.slow
@pytest.mark.ray
def test_tune_trial_ids_name_candidates_without_a_seed_key_and_progress_csv_is_a_fallback(
    tune_dir: Path, tmp_path: Path
) -> None:
    table, _ = import_history([str(tune_dir)], ImportOptions(metric="acc", group="sst2"))
    runs = _per_run(table)
    trial_ids = {
        json.loads(p.read_text().splitlines()[0])["trial_id"]
        for p in tune_dir.glob("*/result.json")
        if "acc" in p.read_text()
    }
    assert {c for c, _ in runs} == trial_ids and {s for _, s in runs} == {0}

    # A trial whose result.json was lost still has progress.csv; one with neither is skipped.
    copy = tmp_path / "exp"
    for trial in tune_dir.iterdir():
        if trial.is_dir():
            (copy / trial.name).mkdir(parents=True)
            for f in trial.iterdir():
                if f.is_file():
                    (copy / trial.name / f.name).write_bytes(f.read_bytes())
    trials = sorted(p for p in copy.iterdir() if "acc" in (p / "result.json").read_text())
    (trials[0] / "result.json").unlink()
    (trials[1] / "result.json").unlink()
    (trials[1] / "progress.csv").unlink()
    with open(trials[2] / "result.json", "a") as f:
        f.write('{"acc": 0.9, "training_iter')  # a trial killed while writing its last line
    again, reports = import_history([str(copy)], ImportOptions(metric="acc", group="sst2"))
    line = reports[0].line()
    assert (
        "no result.json or progress.csv" in line and "1 result.json line(s) that are not JSON objects ignored" in line
    )
    again_runs = _per_run(again)
    assert len(again_runs) == len(runs) - 1
    for key, rows in again_runs.items():
        np.testing.assert_allclose(
            [(r["step"], r["value"]) for r in rows], [(r["step"], r["value"]) for r in runs[key]]
        )


# --------------------------------------------------------------------------------------------
# Hugging Face Trainer


@pytest.mark.slow
def test_trainer_output_dirs_import_eval_metric_with_max_steps_as_horizon(hf_dir: Path, tmp_path: Path) -> None:
    assert (hf_dir / "full" / "trainer_state.json").is_file() and not (
        hf_dir / "stopped" / "trainer_state.json"
    ).exists()
    table, reports = import_history([str(hf_dir)], ImportOptions(metric="eval_accuracy", group="sst2"))
    assert reports[0].line() == f"hf:{hf_dir}: 2 runs read (6 points, 1 with a final), 0 skipped"
    runs = _per_run(table)
    assert set(runs) == {("full", 0), ("stopped", 0)}
    for name in ("full", "stopped"):
        expected = json.loads((hf_dir / name / "expected.json").read_text())
        rows = runs[(name, 0)]
        np.testing.assert_allclose([[r["step"], r["value"]] for r in rows], expected["points"])
        assert all(r["horizon"] == HF_MAX_STEPS and r["group"] == "sst2" for r in rows)
        if name == "full":
            assert expected["global_step"] == HF_MAX_STEPS
            assert all(r["final"] == pytest.approx(expected["points"][-1][1]) for r in rows)
        else:  # stopped at step 6 of 12: its curve, no final
            assert expected["global_step"] == HF_STOP_AT and all(r["final"] is None for r in rows)
    hist = _roundtrip(table, tmp_path / "hf.csv")
    assert {c.candidate: c.horizon for c in hist.per_candidate()} == {"full": HF_MAX_STEPS, "stopped": HF_MAX_STEPS}

    # one output directory on its own, the metric as compute_metrics named it (the Trainer logs eval_accuracy)
    same, _ = import_history([f"hf:{hf_dir / 'stopped'}"], ImportOptions(metric="accuracy", group="sst2"))
    assert same.to_pylist() == table.filter(pa.compute.equal(table["candidate"], "stopped")).to_pylist()
    # a metric the Trainer did not log is a skip naming what it did log
    _, reports = read_sources([f"hf:{hf_dir / 'stopped'}"], ImportOptions(metric="f1"))
    assert reports[0].read == 0
    assert (
        "no 'f1' at a 'step' > 0 in trainer_state.json log_history (eval keys there: eval_accuracy, eval_loss)"
        in reports[0].line()
    )


# --------------------------------------------------------------------------------------------
# Tracker exports


def _wandb_like(path: Path) -> list[dict]:
    """A W&B-style history export: one row per log call, eval/acc only on eval rows, _step from 0.
    Runs a*, b* of task 'rte' run 30 steps; 'b3' stopped at 20; lr is a config column."""
    rows = []
    for run, lr, last in [("a1", 1e-4, 30), ("a2", 3e-4, 30), ("b3", 1e-3, 20)]:
        for step in range(0, last + 1, 5):
            rows.append(
                {
                    "run_id": run,
                    "_step": step,
                    "train/loss": 1.0 / (step + 1),
                    "eval/acc": None,
                    "task": "rte",
                    "lr": lr,
                }
            )
            if step % 10 == 0 and step > 0:
                rows.append(
                    {
                        "run_id": run,
                        "_step": step,
                        "train/loss": None,
                        "eval/acc": 0.5 + lr * 100 * step / 30,
                        "task": "rte",
                        "lr": lr,
                    }
                )
    table = pa.Table.from_pylist(rows)
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_tracker_export_with_a_column_map(tmp_path: Path, suffix: str) -> None:
    export = tmp_path / f"wandb{suffix}"
    _wandb_like(export)
    cmap = parse_column_map(["candidate=run_id,step=_step", "value=eval/acc,group=task", "static_lr=lr"])
    table, reports = import_history([str(export)], ImportOptions(column_map=cmap))
    line = reports[0].line()
    assert line.startswith(f"tracker:{export}: 3 runs read (8 points, 2 with a final), 0 skipped")
    assert "rows without a finite value ignored" in line
    runs = _per_run(table)
    np.testing.assert_allclose(
        [(r["step"], r["value"]) for r in runs[("a2", 0)]], [(s, 0.5 + 3e-2 * s / 30) for s in (10, 20, 30)]
    )
    assert runs[("a2", 0)][0]["final"] == pytest.approx(0.5 + 3e-2)
    assert runs[("b3", 0)][0]["final"] is None and runs[("b3", 0)][0]["horizon"] == 30  # the longest run of 'rte'
    assert {r["static_lr"] for r in runs[("a1", 0)]} == {1e-4}
    hist = _roundtrip(table, tmp_path / "hist.jsonl")
    assert sorted(c.candidate for c in hist.per_candidate()) == ["a1", "a2", "b3"]


def test_horizon_flag_cuts_the_curve_and_mapped_finals_win(tmp_path: Path) -> None:
    export = tmp_path / "runs.csv"
    rows = [{"run": "r1", "step": s, "acc": s / 100, "final_acc": 0.77} for s in (10, 20, 30)]
    rows += [{"run": "r2", "step": s, "acc": s / 200, "final_acc": None} for s in (10, 20, 30)]
    pa_csv.write_csv(pa.Table.from_pylist(rows), export)
    cmap = parse_column_map(["candidate=run,final=final_acc"])
    table, reports = import_history([str(export)], ImportOptions(metric="acc", column_map=cmap, horizon=20))
    runs = _per_run(table)
    assert [r["step"] for r in runs[("r1", 0)]] == [10, 20]  # the point after the horizon is not part of the run
    assert runs[("r1", 0)][0]["final"] == 0.77  # the mapped final, not the value at the horizon
    assert runs[("r2", 0)][0]["final"] == pytest.approx(20 / 200)  # reached the horizon: its value there
    assert {r["horizon"] for r in _rows(table)} == {20}
    assert reports[0].points == 4


def test_runs_that_collide_on_candidate_and_seed_are_an_error_naming_both(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for p in (a, b):
        pa_csv.write_csv(pa.table({"candidate": ["x", "x"], "step": [1, 2], "value": [0.1, 0.2]}), p)
    with pytest.raises(
        HistoryImportError,
        match=r"a\.csv \(run 'x' seed 0\) and .*b\.csv \(run 'x' seed 0\): both are candidate 'x' seed 0",
    ):
        import_history([str(a), str(b)], ImportOptions())


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [
        (
            lambda d: d / "missing",
            ImportOptions(metric="acc"),
            r"missing: not found; expected a Ray Tune experiment directory",
        ),
        (lambda d: d, ImportOptions(metric="acc"), r": a directory with no Ray Tune trial"),
        (
            lambda d: _csv(d),
            ImportOptions(column_map={"candidate": "run_id"}),
            r"t\.csv: no column 'run_id' \(for candidate\); columns in the file: candidate, step, acc",
        ),
        (
            lambda d: _csv(d),
            ImportOptions(),
            r"t\.csv: no column for 'value'; expected --map value=COLUMN or --metric COLUMN",
        ),
        (lambda d: _tune_dir(d), ImportOptions(), r"tune:.*: no --metric; expected the name of the reported metric"),
        (
            lambda d: _csv(d),
            ImportOptions(metric="acc", group="a", group_by="b"),
            r"--group and --group-by: expected one of them",
        ),
        (
            lambda d: _tune_dir(d),
            ImportOptions(metric="acc", column_map={"value": "acc"}),
            r"--map: applies to tracker exports only",
        ),
        (lambda d: Path(f"hf:{_csv(d)}"), ImportOptions(metric="acc"), r"hf:.*t\.csv: is a file; expected a directory"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path: Path, make, options: ImportOptions, message: str) -> None:
    with pytest.raises(HistoryImportError, match=message) as err:
        import_history([str(make(tmp_path))], options)
    assert "\n" not in str(err.value)


def _csv(d: Path) -> Path:
    pa_csv.write_csv(pa.table({"candidate": ["x"], "step": [1], "acc": [0.5]}), d / "t.csv")
    return d / "t.csv"


def _tune_dir(d: Path) -> Path:
    trial = d / "exp" / "trial_0"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text(json.dumps({"acc": 0.5, "training_iteration": 1, "trial_id": "t0"}) + "\n")
    return d / "exp"


def test_column_map_syntax_errors() -> None:
    with pytest.raises(
        HistoryImportError, match=r"--map 'cand=run': expected TARGET=COLUMN with TARGET one of candidate"
    ):
        parse_column_map(["cand=run"])
    with pytest.raises(HistoryImportError, match=r"--map: value given twice"):
        parse_column_map(["value=a", "value=b"])
    assert parse_column_map(["value=eval/acc=top1, step=_step"]) == {"value": "eval/acc=top1", "step": "_step"}


def test_source_kind_prefix_and_detection(tmp_path: Path) -> None:
    exp = _tune_dir(tmp_path)
    assert source_kind(str(exp)) == ("tune", exp)
    assert source_kind(str(_csv(tmp_path))) == ("tracker", tmp_path / "t.csv")
    hf = tmp_path / "out" / "checkpoint-3"
    hf.mkdir(parents=True)
    (hf / "trainer_state.json").write_text(json.dumps({"log_history": [], "global_step": 3, "max_steps": 3}))
    assert source_kind(str(tmp_path / "out")) == ("hf", tmp_path / "out")
    assert source_kind(f"tracker:{tmp_path / 't.csv'}") == ("tracker", tmp_path / "t.csv")


def test_the_imported_table_reads_back_unchanged_as_a_trajectory_file(tmp_path: Path) -> None:
    export = tmp_path / "wandb.csv"
    _wandb_like(export)
    cmap = parse_column_map(["candidate=run_id,step=_step,value=eval/acc,group=task,static_lr=lr"])
    table, _ = import_history([str(export)], ImportOptions(column_map=cmap))
    for suffix in (".parquet", ".csv", ".jsonl"):
        write_table(table, tmp_path / f"h{suffix}")
        back = read_trajectories(tmp_path / f"h{suffix}").to_arrow()
        assert back.select(table.column_names).to_pylist() == table.to_pylist()
