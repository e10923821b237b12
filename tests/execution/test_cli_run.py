"""`prehoc-ray run`: exit codes and one-line messages (0 ok, 2 bad input, 1 explained failure)."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from tests.execution.conftest import JOBS


@pytest.fixture(scope="module")
def cli():
    from prehoc_ray.cli import _register, app

    _register()
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, ["run", *map(str, args)])

    return invoke


def write(tmp_path, **over):
    raw = yaml.safe_load((JOBS / "simulated.yaml").read_text())
    raw.update(over)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one_line_error(result) -> str:
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def test_malformed_spec_is_exit_2_naming_the_field(cli, tmp_path):
    path = write(tmp_path, allocation={"seeds": 1})
    res = cli(path, "--out", tmp_path / "out")
    assert res.exit_code == 2
    assert "allocation.seeds" in one_line_error(res)
    assert not (tmp_path / "out").exists()


def test_missing_spec_and_missing_data_are_exit_2(cli, tmp_path):
    res = cli(tmp_path / "nope.yaml")
    assert res.exit_code == 2 and "job spec not found" in one_line_error(res)
    path = write(tmp_path, backend="real", tasks=[{"name": "t", "path": "missing.jsonl"}])
    res = cli(path, "--out", tmp_path / "out")
    assert res.exit_code == 2
    assert "tasks.0.path" in one_line_error(res)


def test_existing_run_dir_needs_resume_and_the_same_spec(cli, sim_run, tmp_path):
    d = shutil.copytree(sim_run.run_dir, tmp_path / "copy")
    res = cli(JOBS / "simulated.yaml", "--out", d)
    assert res.exit_code == 2 and "--resume" in one_line_error(res)
    other = write(tmp_path, budget={"probe_seconds": 39})
    res = cli(other, "--out", d, "--resume")
    assert res.exit_code == 2 and "belongs to spec" in one_line_error(res)


def test_a_probe_no_node_can_run_is_exit_1_not_a_hang(cli, ray_session, tmp_path):
    path = write(tmp_path, probe={"num_gpus": 1, "eval_every": 10})
    res = cli(path, "--out", tmp_path / "out")
    assert res.exit_code == 1
    line = one_line_error(res)
    assert "no node can run one probe" in line and "probe.num_gpus=1" in line
    assert not (tmp_path / "out").exists()  # nothing written: fix the spec and run again


def test_non_integer_multi_gpu_request_is_exit_2(cli, ray_session, tmp_path):
    path = write(tmp_path, probe={"num_gpus": 1.5})
    res = cli(path, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "probe.num_gpus" in one_line_error(res)


def test_resume_through_the_cli_prints_the_summary(cli, sim_run, tmp_path):
    d = shutil.copytree(sim_run.run_dir, tmp_path / "copy")
    res = cli(JOBS / "simulated.yaml", "--out", d, "--resume", "--quiet")
    assert res.exit_code == 0, res.output
    assert "0 probe attempt(s) run here" in res.output
    for cand in ("copy:tiny-a", "sentiment:tiny-b", "noisy:tiny-a"):
        assert cand in res.output


def _history_file(path, family: str, n: int, with_final: bool = True):
    """n completed past runs of `family`: curves that rise to a final of 0.6-0.8."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    cols = {k: [] for k in ("candidate", "step", "value", "group", "final", "horizon")}
    for i in range(n):
        final = 0.6 + 0.2 * rng.random()
        steps = np.arange(10, 1001, 10, dtype=float)
        vals = final - 0.2 * steps**-0.5 + 0.01 * rng.standard_normal(steps.size)
        cols["candidate"] += [f"past-{i}"] * steps.size
        cols["step"] += list(steps)
        cols["value"] += list(vals)
        cols["group"] += [family] * steps.size
        cols["final"] += [final if with_final else None] * steps.size
        cols["horizon"] += [1000.0] * steps.size
    pq.write_table(pa.table(cols), path)
    return path


def test_a_bad_history_is_exit_2_naming_the_field_and_file(cli, tmp_path):
    hist = _history_file(tmp_path / "past.parquet", "sentiment", 10, with_final=False)
    res = cli(write(tmp_path, history=str(hist)), "--out", tmp_path / "out")
    assert res.exit_code == 2
    line = one_line_error(res)
    assert "history" in line and "past.parquet" in line and "final" in line
    res = cli(write(tmp_path, history="nowhere.csv"), "--out", tmp_path / "out")
    assert res.exit_code == 2 and "history" in one_line_error(res)


def test_a_history_feeds_the_predictions_of_its_family(cli, ray_session, tmp_path):
    import pyarrow.parquet as pq

    _history_file(tmp_path / "past.parquet", "sentiment", 12)
    res = cli(write(tmp_path, history="past.parquet"), "--out", tmp_path / "out", "--quiet")  # relative to the spec
    assert res.exit_code == 0, res.output
    rows = pq.read_table(tmp_path / "out" / "candidates.parquet").to_pylist()
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], set()).add(r["predictor"])
    assert by_task["sentiment"] == {"history"}
    assert by_task["copy"] == {"probes"} and by_task["noisy"] == {"probes"}
    for r in rows:
        if r["task"] == "sentiment":
            assert 0.5 < r["predicted_final"] < 0.9 and r["predicted_std"] > 0
