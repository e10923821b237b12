"""The one ask/tell loop (core/ask_tell.py): the simulator driven through it decides exactly what
the engine driven by hand decides, round for round, float for float."""

from __future__ import annotations

import json

import pytest

from prehoc_ray.core.ask_tell import DriveResult, FunctionBackend, ProbeOutcome, drive
from prehoc_ray.core.engine import Engine, EngineSettings, ProbeOrder
from prehoc_ray.sim.backend import SimulatedBackend, run_simulated
from prehoc_ray.sim.synthetic import SyntheticPortfolio, generate_portfolio
from prehoc_ray.types import StopKind


@pytest.fixture(scope="module")
def portfolio() -> SyntheticPortfolio:
    return generate_portfolio(n_groups=3, candidates_per_group=5, n_seeds=3, horizon=1000, eval_every=10, seed=7)


def settings(p: SyntheticPortfolio, **kw) -> EngineSettings:
    return EngineSettings(
        **{
            "budget": 80.0,
            "seeds": 3,
            "eval_every": 10,
            "initial_depth": 30,
            "tolerance": p.tolerance,
            "n_boot": 20,
            **kw,
        }
    )


def by_hand(p: SyntheticPortfolio, s: EngineSettings, max_rounds: int = 1000, fail: str | None = None) -> Engine:
    """The loop as every caller wrote it before there was one: next_round, run, tell."""
    backend = SimulatedBackend(p)
    eng = Engine(backend.candidates(), s)
    for _ in range(max_rounds):
        orders = eng.next_round()
        if not orders:
            break
        for o in orders:
            if o.candidate == fail:
                eng.tell_failure(o, "out of memory")
                continue
            out = backend.run(o)
            eng.tell(o, out.rows, out.cost_s)
    return eng


def decisions(eng: Engine) -> str:
    # json keeps NaN and the exact float repr: equal strings mean bit-identical decisions
    return json.dumps([eng.summary(), eng.spend_log, eng.round, eng.spent], sort_keys=True, default=str)


@pytest.mark.parametrize("objective", ["decision", "prediction"])
def test_the_simulator_through_drive_decides_what_the_engine_by_hand_decides(portfolio, objective):
    s = settings(portfolio, objective=objective)
    eng = run_simulated(portfolio, s)
    assert eng.finished and eng.round >= 3  # a real run: initial probes, then extensions
    assert decisions(eng) == decisions(by_hand(portfolio, s))


def test_max_rounds_stops_between_rounds_with_nothing_open(portfolio):
    s = settings(portfolio)
    eng = Engine(SimulatedBackend(portfolio).candidates(), s)
    done = drive(eng, SimulatedBackend(portfolio), max_rounds=2)
    assert done.rounds == 2 and not done.finished and done.failures == 0
    assert decisions(eng) == decisions(by_hand(portfolio, s, max_rounds=2))
    assert eng.next_round()  # nothing left open: the caller may go on asking
    full = Engine(SimulatedBackend(portfolio).candidates(), s)
    result = drive(full, SimulatedBackend(portfolio))
    assert result.finished and result.rounds == full.round
    assert result.probes == len(full.spend_log)


def test_a_failed_outcome_stops_its_candidate_as_tell_failure_does(portfolio):
    s = settings(portfolio)
    sim = SimulatedBackend(portfolio)
    bad = sim.candidates()[4].id

    def run(o: ProbeOrder) -> ProbeOutcome:
        return ProbeOutcome.failed("out of memory") if o.candidate == bad else sim.run(o)

    eng = Engine(sim.candidates(), s)
    done = drive(eng, FunctionBackend(run))
    assert done == DriveResult(rounds=eng.round, probes=done.probes, failures=s.seeds, finished=True)
    assert eng.states[bad].stop_kind is StopKind.PROBE_FAILED
    assert decisions(eng) == decisions(by_hand(portfolio, s, fail=bad))


def test_outcomes_refuse_what_the_engine_cannot_be_told():
    with pytest.raises(ValueError, match="cost_s"):
        ProbeOutcome([], float("nan"))
    with pytest.raises(ValueError, match="cost_s"):
        ProbeOutcome([], -1.0)
    with pytest.raises(ValueError, match="failure"):
        ProbeOutcome([{"step": 10.0, "value": 0.5}], 1.0, failure="lost")
    with pytest.raises(ValueError, match="failure"):
        ProbeOutcome.failed("")
    assert ProbeOutcome.failed("lost", 2.0).cost_s == 2.0 and not ProbeOutcome.failed("lost").ok
    with pytest.raises(ValueError, match="max_rounds"):
        drive(None, None, max_rounds=-1)  # type: ignore[arg-type]
