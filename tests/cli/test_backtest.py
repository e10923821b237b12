"""`prehoc-ray backtest` on recorded tables: picks anyone can score, and one-line errors."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prehoc_ray.bench.export import world_table
from prehoc_ray.bench.worlds import deberta_world, demo_world
from prehoc_ray.bench.worlds_table import table_world
from prehoc_ray.cli import _register, app
from prehoc_ray.io import read_trajectories, write_table

_register()


@pytest.fixture(scope="module")
def deberta_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "deberta.parquet"
    write_table(world_table(deberta_world(10, 2, seed=4, n_history=0)), path)
    return path


def test_a_table_round_trips_into_the_same_world(tmp_path):
    w = demo_world(0, probe_seeds=2)
    path = tmp_path / "demo.parquet"
    write_table(world_table(w), path)
    back = table_world(read_trajectories(path))
    assert [c.id for c in back.candidates] == [c.id for c in w.candidates]
    assert back.eval_every == w.eval_every and back.max_probe_depth == w.max_probe_depth
    for a, b in zip(w.candidates, back.candidates):
        assert (
            a.true_final == b.true_final
            and a.cost_per_step == pytest.approx(b.cost_per_step)
            and a.n_seeds == b.n_seeds
        )
        np.testing.assert_array_equal(a.curve(1)[1], b.curve(1)[1])


def test_backtest_writes_picks_that_score_against_the_final_column(deberta_table, tmp_path):
    out = tmp_path / "bt"
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            str(deberta_table),
            "--budget",
            "0.05,0.2",
            "--policy",
            "prehoc",
            "--policy",
            "uniform",
            "--policy",
            "oracle",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "seed dispersion is not observable" in res.output
    picks = pq.read_table(out / "picks.parquet").to_pylist()
    metrics = pq.read_table(out / "backtest.parquet").to_pylist()
    table = pq.read_table(deberta_table).to_pydict()
    final = dict(zip(table["candidate"], table["final"]))
    group = dict(zip(table["candidate"], table["group"]))
    best = {g: max(f for c, f in final.items() if group[c] == g) for g in set(group.values())}
    assert {(p["policy"], p["budget"]) for p in picks} == {
        (p, b) for p in ("prehoc", "uniform", "oracle") for b in (0.05, 0.2)
    }
    for m in metrics:
        mine = [
            p for p in picks if p["policy"] == m["policy"] and p["budget"] == m["budget"] and p["repeat"] == m["repeat"]
        ]
        assert len(mine) == 2  # one pick per task
        rescored = np.mean([best[p["group"]] - final[p["candidate"]] for p in mine])
        assert m["regret"] == pytest.approx(rescored)
        assert m["policy"] == "oracle" or m["spent"] <= m["budget"] + 1e-9
    assert all(m["regret"] == 0 for m in metrics if m["policy"] == "oracle")
    report = (out / "report.md").read_text()
    assert "Paired difference" in report and "prehoc" in report and (out / "regret.png").stat().st_size > 1000


def _write(tmp_path, **cols):
    base = {
        "candidate": ["a", "a", "b", "b"],
        "step": [10.0, 20.0, 10.0, 20.0],
        "value": [0.1, 0.2, 0.3, 0.4],
        "group": ["t", "t", "t", "t"],
        "horizon": [100.0] * 4,
        "final": [0.5, 0.5, 0.6, 0.6],
    }
    base.update(cols)
    base = {k: v for k, v in base.items() if v is not None}
    path = tmp_path / "t.csv"
    _csv(base, path)
    return path


def _csv(cols, path):
    import csv

    keys = list(cols)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for row in zip(*cols.values()):
            w.writerow(row)


@pytest.mark.parametrize(
    "cols, args, expect",
    [
        ({"final": ["", "", 0.6, 0.6]}, [], "column 'final' row 1: candidate 'a' has no final"),
        ({"cost_per_step": [1, 1, "fast", "fast"]}, [], "column 'cost_per_step' row 3"),
        ({"cost_per_step": [1, 1, -2, -2]}, [], "column 'cost_per_step' row 3"),
        ({}, ["--budget", "0.1,2"], "--budget: expected fractions in (0, 1]"),
        ({}, ["--policy", "hyperband"], "--policy: expected one of"),
        ({"value": [0.1, "x", 0.3, 0.4]}, [], "value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, cols, args, expect):
    path = _write(tmp_path, **cols)
    res = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert expect in res.output and len(res.output.strip().splitlines()) == 1


def test_more_than_one_final_per_candidate_is_rejected(tmp_path):
    # seeds of one candidate disagree on its full run's outcome
    path = _write(tmp_path, candidate=["a", "a", "a", "a"], seed=[0, 0, 1, 1], final=[0.5, 0.5, 0.55, 0.55])
    res = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "column 'final' row 3" in res.output and "more than one final" in res.output


def test_portfolios_give_units_and_say_which_candidates_they_hold(deberta_table, tmp_path):
    out = tmp_path / "p"
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            str(deberta_table),
            "--budget",
            "0.1",
            "--policy",
            "prehoc",
            "--policy",
            "uniform",
            "--portfolios",
            "5",
            "--portfolio-size",
            "6",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    members = pq.read_table(out / "portfolios.parquet").to_pylist()
    picks = pq.read_table(out / "picks.parquet").to_pylist()
    held = {(m["world"], m["candidate"]) for m in members}
    assert len({m["world"] for m in members}) == 5 and all((p["world"], p["candidate"]) in held for p in picks)
    assert "5 random portfolios of 6 candidates" in (out / "report.md").read_text()


def _loss_table(path):
    """Six candidates whose loss falls to finals 0.5 .. 2.0 (lower is better): c0 is the best."""
    rows = {"candidate": [], "step": [], "value": [], "final": []}
    for i, fin in enumerate(np.linspace(0.5, 2.0, 6)):
        for s in range(100, 1001, 100):
            rows["candidate"].append(f"c{i}")
            rows["step"].append(float(s))
            rows["value"].append(float(fin + 2 * np.exp(-s / 300)))
            rows["final"].append(float(fin))
    _csv(rows, path)
    return path


def test_a_loss_is_replayed_with_mode_min_and_a_falling_table_is_flagged_without_it(tmp_path):
    path = _loss_table(tmp_path / "loss.csv")
    res = CliRunner().invoke(
        app,
        [
            "backtest",
            str(path),
            "--out",
            str(tmp_path / "min"),
            "--mode",
            "min",
            "--budget",
            "0.2",
            "--policy",
            "oracle",
            "--policy",
            "uniform",
        ],
    )
    assert res.exit_code == 0, res.output
    picks = pq.read_table(tmp_path / "min" / "picks.parquet").to_pylist()
    oracle = [p for p in picks if p["policy"] == "oracle"]
    assert oracle and all(p["candidate"] == "c0" and p["regret"] == 0 for p in oracle)
    # uniform sees every curve to the same depth: the lowest loss there is the lowest final
    assert all(p["candidate"] == "c0" for p in picks if p["policy"] == "uniform")
    assert "--mode min" not in res.output  # no note: the direction was given
    res = CliRunner().invoke(
        app, ["backtest", str(path), "--out", str(tmp_path / "max"), "--budget", "0.2", "--policy", "oracle"]
    )
    assert res.exit_code == 0 and "pass --mode min" in res.output
    res = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "x"), "--mode", "lowest"])
    assert res.exit_code == 2 and "--mode: expected max" in res.output


def test_a_step_past_its_horizon_is_refused_as_analyze_does(tmp_path):
    path = _write(tmp_path, horizon=[15.0] * 4)
    res = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "column 'step' row 2: expected a step <= its horizon (15)" in res.output


def test_runs_that_end_early_with_other_horizons_and_a_run_that_never_reports(tmp_path):
    """One run stopped at step 300 of 1,000 while the others have 2,000-step horizons (every
    policy's probes stop at the shortest curve, each candidate at its own step), and a run whose
    crashed seed ends before the others' first evaluation (ASHA gets no metric from it)."""
    rows = {"candidate": [], "seed": [], "step": [], "value": [], "final": [], "horizon": []}

    def add(c, seed, steps, fin, horizon):
        for s in steps:
            rows["candidate"].append(c)
            rows["seed"].append(seed)
            rows["step"].append(float(s))
            rows["value"].append(float(fin - 0.3 * np.exp(-s / 400)))
            rows["final"].append(fin)
            rows["horizon"].append(horizon)

    add("c0", 0, range(100, 301, 100), 0.6, 1000.0)
    for i in range(1, 6):
        add(f"c{i}", 0, range(100, 2001, 100), 0.6 + 0.02 * i, 2000.0)
    path = tmp_path / "early.csv"
    _csv(rows, path)
    res = CliRunner().invoke(
        app,
        ["backtest", str(path), "--out", str(tmp_path / "o"), "--budget", "0.1,0.2", "--seeds", "1", "--repeats", "1"],
    )
    assert res.exit_code == 0, res.output
    assert set(pq.read_table(tmp_path / "o" / "backtest.parquet").column("policy").to_pylist()) >= {"prehoc", "asha"}

    rows = {k: [] for k in rows}
    add("a", 0, range(50, 1001, 50), 0.7, 1000.0)
    add("a", 1, [50], 0.7, 1000.0)  # a crashed seed
    add("b", 0, range(80, 1001, 80), 0.75, 1000.0)
    _csv(rows, path)
    res = CliRunner().invoke(
        app,
        ["backtest", str(path), "--out", str(tmp_path / "h"), "--budget", "0.1", "--policy", "asha", "--repeats", "1"],
    )
    assert res.exit_code == 0, res.output


def test_a_policy_that_crashes_keeps_the_finished_policies_results(deberta_table, tmp_path, monkeypatch):
    import prehoc_ray.bench.backtest as bench

    real = bench.evaluate_policy

    def evaluate(world, policy, *args, **kw):
        if policy == "sh":
            raise RuntimeError("boom")
        return real(world, policy, *args, **kw)

    monkeypatch.setattr(bench, "evaluate_policy", evaluate)
    out = tmp_path / "bt"
    args = ["backtest", str(deberta_table), "--budget", "0.05,0.2", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--policy", "oracle", "--policy", "uniform", "--policy", "sh"])
    assert res.exit_code == 1, res.output
    err = res.output.strip().splitlines()[-1]
    assert "policy 'sh' raised RuntimeError: boom" in err
    assert f"the results of oracle, uniform (finished before it) were kept in {out}" in err
    picks = pq.read_table(out / "picks.parquet").to_pylist()
    metrics = pq.read_table(out / "backtest.parquet").to_pylist()
    assert {p["policy"] for p in picks} == {m["policy"] for m in metrics} == {"oracle", "uniform"}
    assert {(m["policy"], m["budget"]) for m in metrics} == {(p, b) for p in ("oracle", "uniform") for b in (0.05, 0.2)}
    assert "Partial results: oracle, uniform of oracle, uniform, sh" in (out / "report.md").read_text()
    assert (out / "regret.png").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]

    res = CliRunner().invoke(app, [*args, "--policy", "sh", "--out", str(tmp_path / "none")])
    assert res.exit_code == 1 and "no policy had finished, so nothing was written" in res.output
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--portfolio-size", "6"], "--portfolio-size: only used with --portfolios K"),
        (["--portfolios", "0", "--portfolio-size", "6"], "add --portfolios or drop --portfolio-size"),
        (["--portfolios", "3"], "expected a count >= 1 and a size >= 2 candidates per task, got 3 and none"),
    ],
)
def test_a_portfolio_size_without_portfolios_is_bad_input(tmp_path, args, expect):
    path = _write(tmp_path)
    res = CliRunner().invoke(app, ["backtest", str(path), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert expect in res.output and len(res.output.strip().splitlines()) == 1


def test_an_out_that_cannot_be_created_fails_before_the_replay(deberta_table, tmp_path):
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file" / "x", "/dev/null/x"):
        res = CliRunner().invoke(app, ["backtest", str(deberta_table), "--out", str(out), "--policy", "oracle"])
        assert res.exit_code == 2, res.output
        assert len(res.output.strip().splitlines()) == 1 and "read " not in res.output
        assert f"--out: cannot create {out}: " in res.output and "is not a directory" in res.output
    out = tmp_path / "fresh" / "deep"
    bad = CliRunner().invoke(app, ["backtest", str(tmp_path / "missing.csv"), "--out", str(out)])
    assert bad.exit_code == 2 and not (tmp_path / "fresh").exists()  # bad input leaves no directory behind
    res = CliRunner().invoke(app, ["backtest", str(deberta_table), "--out", str(out), "--policy", "oracle"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["backtest.parquet", "picks.parquet", "regret.png", "report.md"]
