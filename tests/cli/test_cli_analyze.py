"""`prehoc-ray analyze` end to end on a small synthetic portfolio, and its bad-input contract."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prehoc_ray.cli import _register, app
from prehoc_ray.sim.synthetic import generate_portfolio

_register()
runner = CliRunner()

PRED_COLUMNS = {
    "candidate",
    "group",
    "depth",
    "predicted_final",
    "predicted_std",
    "lower",
    "upper",
    "regime",
    "final",
    "last_observed",
}
DECOMP_COLUMNS = {
    "unit",
    "L_int",
    "L_int_lo",
    "L_int_hi",
    "K",
    "K_lo",
    "K_hi",
    "alpha",
    "alpha_lo",
    "alpha_hi",
    "L0",
    "c_star",
    "regime",
    "n_points",
    "diagnostics",
}
FAST = ["--n-boot", "20"]


def _portfolio_table(seed: int = 3) -> pa.Table:
    # Two groups of 9 candidates (>= 8 completed runs: the population path), 2 seeds each.
    p = generate_portfolio(n_groups=2, candidates_per_group=9, n_seeds=2, horizon=100.0, eval_every=10, seed=seed)
    o = p.observations
    cols = {
        "candidate": pa.array([str(c) for c in o.candidate]),
        "step": pa.array(o.step),
        "value": pa.array(o.value),
        "seed": pa.array(o.seed.astype(np.int64)),
        "group": pa.array([str(g) for g in o.group]),
        "final": pa.array(o.final),
        "horizon": pa.array(o.horizon),
    }
    cols.update({k: pa.array(v) for k, v in o.static.items()})
    return pa.table(cols)


def _invoke(*args: str):
    return runner.invoke(app, ["analyze", *map(str, args)])


def _ok(result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return _portfolio_table()


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory, table) -> Path:
    path = tmp_path_factory.mktemp("traj") / "traj.csv"
    pa_csv.write_csv(table, path)
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, csv_path) -> Path:
    out = tmp_path_factory.mktemp("out") / "base"
    _ok(_invoke(csv_path, "--out", out, *FAST))
    return out


def test_writes_every_file_with_the_promised_columns(base_run, table):
    for name in ("predictions.parquet", "decomposition.parquet", "phase_diagram.png", "decay.png", "report.md"):
        assert (base_run / name).stat().st_size > 0, name
    pred = pq.read_table(base_run / "predictions.parquet")
    assert PRED_COLUMNS <= set(pred.column_names)
    assert pred.num_rows == len(set(table.column("candidate").to_pylist()))
    p = pred.to_pydict()
    assert all(math.isfinite(v) for v in p["predicted_final"])
    assert all(lo <= m <= hi for lo, m, hi in zip(p["lower"], p["predicted_final"], p["upper"]))
    assert set(p["regime"]) <= {"Static-Sufficient", "Dynamic-Critical", "Noise-Dominant", "Undetermined"}
    dec = pq.read_table(base_run / "decomposition.parquet")
    assert DECOMP_COLUMNS <= set(dec.column_names)
    units = dec.column("unit").to_pylist()
    assert any(u.startswith("group:") for u in units) and any(u.startswith("candidate:") for u in units)
    assert (base_run / "phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (base_run / "report.md").read_text()
    for needle in (
        "## Settings",
        "## Regimes",
        "## Units",
        "phase_diagram.png",
        "decay.png",
        "## Diagnostics",
        "floor_unidentified",
    ):
        assert needle in report


def test_own_final_never_used_for_own_prediction(tmp_path, base_run, table):
    base = pq.read_table(base_run / "predictions.parquet").to_pydict()
    victim = base["candidate"][4]
    cand = table.column("candidate").to_pylist()
    final = np.array(table.column("final").to_pylist())
    final[[c == victim for c in cand]] += 0.5  # a wildly different realised outcome
    changed = table.set_column(table.column_names.index("final"), "final", pa.array(final))
    path = tmp_path / "changed.parquet"
    pq.write_table(changed, path)
    out = tmp_path / "out"
    _ok(_invoke(path, "--out", out, *FAST))
    new = pq.read_table(out / "predictions.parquet").to_pydict()
    i = base["candidate"].index(victim)
    assert new["candidate"][i] == victim
    assert new["predicted_final"][i] == pytest.approx(base["predicted_final"][i], rel=0, abs=1e-12)
    assert new["predicted_std"][i] == pytest.approx(base["predicted_std"][i], rel=0, abs=1e-12)
    assert new["final"][i] == pytest.approx(base["final"][i] + 0.5)
    # ...while the final does reach the models of the other candidates of its group (observed
    # through their horizon, they keep their seeds' mean; the model sets their intervals).
    group = base["group"][i]
    others = [j for j, g in enumerate(base["group"]) if g == group and j != i]
    assert max(abs(new["predicted_std"][j] - base["predicted_std"][j]) for j in others) > 1e-9


def test_depth_truncation_changes_predictions(tmp_path, csv_path, base_run):
    out = tmp_path / "shallow"
    result = _invoke(csv_path, "--out", out, "--depth", "30", *FAST)
    _ok(result)
    assert "step <= 30" in result.output
    shallow = pq.read_table(out / "predictions.parquet").to_pydict()
    full = pq.read_table(base_run / "predictions.parquet").to_pydict()
    assert set(shallow["depth"]) == {30.0}
    assert all(v <= 30 for v in shallow["depth"])
    diff = np.abs(np.array(shallow["predicted_final"]) - np.array(full["predicted_final"]))
    assert diff.max() > 1e-6
    # the last observed value is the one at step 30, not the end of the run
    assert shallow["last_observed"] != full["last_observed"]


def test_jsonl_without_finals_single_seed_runs(tmp_path):
    # No finals and one seed: no population and no seed dispersion; predictions are the
    # candidates' own extrapolations and every regime is Undetermined. Must not crash.
    rows = [
        "{" + f'"candidate": "c{c}", "step": {s}, "value": {0.5 + 0.1 * c - 0.2 / s:.4f}' + "}"
        for c in range(3)
        for s in range(1, 8)
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = _invoke(path, "--out", out, "--mode", "min")
    _ok(result)
    p = pq.read_table(out / "predictions.parquet").to_pydict()
    assert p["regime"] == ["Undetermined"] * 3
    assert p["rank"][p["candidate"].index("c0")] == 1  # mode min: the lowest predicted value ranks first
    assert (out / "decay.png").stat().st_size > 0 and (out / "phase_diagram.png").stat().st_size > 0


# Bad input: one line on stderr, naming the column/row/option, exit code 2, no traceback ------

GOOD_HEADER = "candidate,step,value,seed\n"


def _bad_csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_FILES = {
    "missing column": ("candidate,step\na,1\n", ["'value'"]),
    "non-numeric value": (GOOD_HEADER + "a,1,0.5,0\na,2,abc,0\n", ["'value'", "row 2", "abc"]),
    "step zero": (GOOD_HEADER + "a,1,0.5,0\na,0,0.6,0\n", ["'step'", "row 2"]),
    "negative step": (GOOD_HEADER + "a,-3,0.5,0\n", ["'step'", "row 1"]),
    "nan value": (GOOD_HEADER + "a,1,0.5,0\na,2,nan,0\n", ["'value'", "row 2"]),
    "nan step": (GOOD_HEADER + "a,nan,0.5,0\n", ["'step'", "row 1"]),
    "empty cell": (GOOD_HEADER + "a,1,,0\n", ["'value'", "row 1"]),
    "empty table": (GOOD_HEADER, ["no data rows"]),
    "non-integer seed": (GOOD_HEADER + "a,1,0.5,1.5\n", ["'seed'", "row 1"]),
    "non-numeric final": ("candidate,step,value,final\na,1,0.5,x\n", ["'final'", "row 1"]),
    "duplicate step": (GOOD_HEADER + "a,1,0.5,0\na,1,0.6,0\n", ["'step'", "row 2"]),
}


def _assert_bad(result, needles: list[str]) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("error:")
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_one_line_exit_2(tmp_path, case):
    text, needles = BAD_FILES[case]
    _assert_bad(_invoke(_bad_csv(tmp_path, text), "--out", tmp_path / "out"), needles)
    assert not (tmp_path / "out" / "predictions.parquet").exists()


def test_unknown_file_type(tmp_path):
    _assert_bad(
        _invoke(_bad_csv(tmp_path, GOOD_HEADER + "a,1,0.5,0\n", "t.txt"), "--out", tmp_path / "o"),
        ["unknown file type", ".txt"],
    )


def test_missing_file(tmp_path):
    _assert_bad(_invoke(tmp_path / "nope.csv", "--out", tmp_path / "o"), ["nope.csv", "not found"])


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"candidate": "a", "step": 1, "value": 0.5}\n{"candidate": "a", "step": \n')
    _assert_bad(_invoke(path, "--out", tmp_path / "o"), ["line 2"])


BAD_OPTIONS = {
    "level above 1": (["--level", "1.5"], ["--level", "1.5"]),
    "level zero": (["--level", "0"], ["--level"]),
    "level not a number": (["--level", "abc"], ["--level", "number"]),
    "level nan": (["--level", "nan"], ["--level"]),
    "tolerance zero": (["--tolerance", "0"], ["--tolerance"]),
    "tolerance inf": (["--tolerance", "inf"], ["--tolerance"]),
    "cost negative": (["--cost-per-step", "-1"], ["--cost-per-step"]),
    "gamma zero": (["--gamma", "0"], ["--gamma"]),
    "depth zero": (["--depth", "0"], ["--depth"]),
    "depth below every step": (["--depth", "0.5"], ["--depth", "smallest step"]),
    "horizon negative": (["--horizon", "-10"], ["--horizon"]),
    "mode unknown": (["--mode", "best"], ["--mode", "best"]),
    "n-boot negative": (["--n-boot", "-1"], ["--n-boot"]),
    "seed negative": (["--seed", "-1"], ["--seed", ">= 0"]),
    "out not creatable": (["--out", "/dev/null/x"], ["--out", "/dev/null/x"]),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option_is_one_line_exit_2(tmp_path, case):
    args, needles = BAD_OPTIONS[case]
    path = _bad_csv(tmp_path, GOOD_HEADER + "a,1,0.5,0\na,2,0.6,0\n")
    _assert_bad(_invoke(path, "--out", tmp_path / "out", *args), needles)


def test_missing_out_option(tmp_path):
    path = _bad_csv(tmp_path, GOOD_HEADER + "a,1,0.5,0\n")
    _assert_bad(_invoke(path), ["--out"])


def test_out_is_a_file(tmp_path):
    path = _bad_csv(tmp_path, GOOD_HEADER + "a,1,0.5,0\n")
    target = tmp_path / "taken"
    target.write_text("x")
    _assert_bad(_invoke(path, "--out", target), ["--out", "not a directory"])


def test_help_lists_the_options():
    result = runner.invoke(app, ["analyze", "--help"])
    assert result.exit_code == 0
    for opt in ("--out", "--mode", "--depth", "--horizon", "--level", "--tolerance", "--cost-per-step", "--gamma"):
        assert opt in result.output


def test_candidate_without_an_observation_at_the_depth_has_no_rank(tmp_path):
    path = _bad_csv(tmp_path, GOOD_HEADER + "a,1,0.5,0\na,2,0.6,0\nb,5,0.7,0\nb,6,0.8,0\n")
    _ok(_invoke(path, "--out", tmp_path / "o", "--depth", "3", "--n-boot", "0"))
    p = pq.read_table(tmp_path / "o" / "predictions.parquet").to_pydict()
    assert p["rank"][p["candidate"].index("a")] == 1
    assert math.isnan(p["predicted_final"][p["candidate"].index("b")] or math.nan)
    assert p["rank"][p["candidate"].index("b")] is None


def test_percent_scale_metric_gets_a_tolerance_note_and_crashed_seed_is_named(tmp_path):
    rows = [GOOD_HEADER.strip()]
    for c, top in (("a", 60.0), ("b", 80.0)):
        for s in range(3):
            for step in range(10, 101, 10):
                if (c, s) == ("a", 2) and step > 30:
                    continue
                rows.append(f"{c},{step},{top - 30 * (step / 10) ** -0.5 + s * 0.3:.3f},{s}")
    path = _bad_csv(tmp_path, "\n".join(rows) + "\n")
    result = _invoke(path, "--out", tmp_path / "o", "--n-boot", "0")
    _ok(result)
    assert "--tolerance 2" in result.output
    assert "a: left out seed 2 at step 30" in result.output


def test_report_does_not_score_runs_observed_through_their_horizon(tmp_path, base_run, csv_path):
    # Without --depth every run with a final was observed to its end: its prediction is what it
    # reached, so scoring it would score the data against itself (RMSE 0, coverage 1).
    report = (base_run / "report.md").read_text()
    assert "observed through its horizon, so its prediction is what it reached: nothing to score" in report
    out = tmp_path / "shallow"
    _ok(_invoke(csv_path, "--out", out, "--depth", "30", *FAST))
    assert (
        "Scored on the 18 candidates with a known final that were predicted before their horizon"
        in (out / "report.md").read_text()
    )
