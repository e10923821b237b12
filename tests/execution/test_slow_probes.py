"""The budget holds when probes cost several times what the driver guessed (a loaded node):
the real driver on a local Ray, the simulated backend with sim["cost_scale"]."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from prehoc_ray.execution.progress import Progress
from tests.execution.test_loop import decisions

pytestmark = pytest.mark.slow  # two simulated runs on a local Ray (about 20 s)


class Recording(Progress):
    """Every (round, spent, probes finished) the progress line was given."""

    def __init__(self, budget: float, candidates: int) -> None:
        super().__init__(budget, candidates, quiet=True)
        self.seen: list[tuple[int, float, int]] = []

    def update(self, **fields) -> None:
        super().update(**fields)
        self.seen.append((self.snap.round, self.snap.spent, self.snap.finished))


def _largest_increment(engine) -> float:
    """The dearest increment the run paid: all seeds of one candidate in one round."""
    per = Counter()
    for h in engine.spend_log:
        per[(h["round"], h["candidate"])] += h["cost_s"]
    return max(per.values())


@pytest.fixture(scope="module")
def slow_runs(ray_session, sim_spec, tmp_path_factory):
    from prehoc_ray.execution.driver import Driver

    out = {}
    for scale in (3.0, 6.0):
        progress = Recording(sim_spec.budget.probe_seconds, len(sim_spec.candidate_specs()))
        run_dir = tmp_path_factory.mktemp(f"slow{scale:g}") / "run"
        out[scale] = (Driver(sim_spec, run_dir, sim={"cost_scale": scale}, progress=progress).run(), progress)
    return out


@pytest.mark.parametrize("scale", [3.0, 6.0])
def test_spend_stays_within_one_increment_of_the_budget_and_a_plan_comes_out(slow_runs, scale):
    res, _ = slow_runs[scale]
    budget = res.engine.settings.budget
    assert res.engine.spent <= budget + _largest_increment(res.engine)
    assert res.engine.spent >= 0.5 * budget  # the budget is used, not hoarded
    assert res.engine.finished and res.plan_written
    assert (res.run_dir / "plan.json").is_file()
    assert all(r["stop_reason"] for r in res.candidates)


def test_orders_the_budget_cannot_pay_are_withdrawn_and_their_candidates_say_why(slow_runs):
    from prehoc_ray.execution.ledger import read_withdrawals
    from prehoc_ray.io.store import ResultStore

    res, _ = slow_runs[6.0]
    withdrawn = read_withdrawals(res.run_dir)
    assert withdrawn  # six times the guess: round 1 cannot run every initial probe
    started = {e["probe_id"] for e in ResultStore(res.run_dir).read_probes().to_pylist()}
    assert not set(withdrawn) & started  # withdrawn means never started
    for pid, stop in withdrawn.items():
        if stop:
            cand = pid.split("|")[1]
            row = next(r for r in res.candidates if r["candidate"] == cand)
            assert row["stop_reason"] == stop and stop.startswith("probe budget spent")


def test_a_resumed_run_replays_its_withdrawals(slow_runs, sim_spec, tmp_path):
    from prehoc_ray.execution.driver import Driver

    res, _ = slow_runs[6.0]
    d = shutil.copytree(res.run_dir, tmp_path / "copy")
    again = Driver(sim_spec, d, resume=True, sim={"cost_scale": 6.0}, progress=Progress(1, 1, quiet=True)).run()
    assert again.submitted == 0
    assert decisions(again.candidates) == decisions(res.candidates)
    assert again.engine.spent == res.engine.spent


def test_spend_and_probes_finished_show_as_probes_end_not_at_round_ends(slow_runs):
    res, progress = slow_runs[3.0]
    first = [(spent, done) for rnd, spent, done in progress.seen if rnd == 1]
    spends = sorted({s for s, _ in first})
    assert len(spends) > 3 and spends[0] == 0.0  # round 1's spend grows probe by probe
    assert max(done for _, done in first) > 1
