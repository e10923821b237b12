"""The ledger and its replay (no Ray): what PrehocScheduler's save/restore rests on.

The scheduler's state after a restore is whatever a replay of its ledger gives; these tests pin
that a replay equals the engine driven directly, that a partial ledger stops at the right open
orders, and that finishing it from there reaches the same plan as never stopping.
"""

from __future__ import annotations

import math

import pytest

from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings
from prehoc_ray.tune.ledger import Ledger, Replay
from tests.tune.conftest import synthetic_curves

MAX_T = 15
SETTINGS = EngineSettings(budget=45, seeds=1, eval_every=1, initial_depth=3, tolerance=0.02)


def _full_ledger(curves: dict[str, list[float]], path=None) -> Ledger:
    led = Ledger()
    if path is not None:
        led.attach(path, {"test": 1})
    for name, vals in curves.items():
        led.add_trial(name, name.split("-")[0])
        for k, v in enumerate(vals, 1):
            led.add_row(name, k, v)
    return led


def _direct(curves: dict[str, list[float]]) -> Engine:
    """The engine driven by hand, every order answered from the curves (api.py's loop)."""
    eng = Engine(
        [CandidateInfo(n, n.split("-")[0], MAX_T, prior_cost_per_step=1.0, prior_cost_exact=True) for n in curves],
        SETTINGS,
    )
    while orders := eng.next_round():
        for o in orders:
            rows = [
                {"step": float(k), "value": v}
                for k, v in enumerate(curves[o.candidate], 1)
                if o.start_step < k <= o.target_step
            ]
            eng.tell(o, rows, float(o.target_step - o.start_step))
    return eng


def _key(rows: list[dict]) -> dict:
    return {r["candidate"]: (r["probe_steps"], r["predicted_final"], r["stop_kind"]) for r in rows}


def test_replay_of_a_full_ledger_is_the_engine_driven_directly():
    curves = synthetic_curves()
    rp = Replay(_full_ledger(curves), SETTINGS, MAX_T)
    rp.advance()
    assert rp.finished and not rp.open
    direct = _direct(curves)
    assert rp.engine.spent == direct.spent <= SETTINGS.budget
    assert rp.engine.round == direct.round > 1
    assert _key(rp.engine.summary()) == _key(direct.summary())


def test_partial_ledger_stops_at_its_open_orders_and_finishing_it_matches(tmp_path):
    curves = synthetic_curves()
    full = Replay(_full_ledger(curves), SETTINGS, MAX_T)
    full.advance()
    # Only the first 4 steps of every trial were reported: round 1 (to depth 3) is answered,
    # round 2 asks for more than the ledger holds from the trials it extends.
    cut = {n: v[:4] for n, v in curves.items()}
    path = tmp_path / "ledger.jsonl"
    led = _full_ledger(cut, path)
    part = Replay(led, SETTINGS, MAX_T)
    part.advance()
    assert not part.finished and part.open
    assert all(o.target_step > 4 for o in part.open.values())
    assert all(o.start_step >= 3 for o in part.open.values())
    # The same state comes back from the file (what a restored scheduler loads) ...
    loaded = Ledger.load(path)
    assert {t: r.rows for t, r in loaded.trials.items()} == {t: r.rows for t, r in led.trials.items()}
    again = Replay(loaded, SETTINGS, MAX_T)
    again.advance()
    assert again.open == part.open and again.engine.spent == part.engine.spent
    # ... and reporting the rest of the curves from there reaches the uninterrupted plan.
    for n, vals in curves.items():
        for k, v in enumerate(vals, 1):
            if k > 4:
                loaded.add_row(n, k, v)
    again.advance()
    assert again.finished
    assert _key(again.engine.summary()) == _key(full.engine.summary())


def test_ledger_file_round_trip_skips_a_torn_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = _full_ledger({"a-0": [0.1, 0.2, float("nan")], "a-1": [0.3]}, path)
    led.end("a-1", "errored")
    with open(path, "a") as fh:
        fh.write('{"e": "row", "id": "a-0", "st')  # a crash mid-write
    back = Ledger.load(path)
    assert back.header["test"] == 1 and back.header["e"] == "scheduler"
    assert back.trials["a-0"].rows[1] == 0.1 and back.trials["a-0"].rows[2] == 0.2
    assert math.isnan(back.trials["a-0"].rows[3])
    assert back.trials["a-1"].ended == "errored" and back.trials["a-1"].reached == 1
    saved = tmp_path / "saved.jsonl"
    back.save(saved)
    assert Ledger.load(saved).trials.keys() == back.trials.keys()


def test_a_trial_that_ends_short_of_its_target_stops_its_candidate_only():
    curves = synthetic_curves()
    led = _full_ledger({n: (v[:2] if n == "t0-2" else v) for n, v in curves.items()})
    led.end("t0-2", "errored")
    rp = Replay(led, SETTINGS, MAX_T)
    rp.advance()
    assert rp.finished
    st = rp.engine.states["t0-2"]
    assert st.failed is not None and "ended at step 2" in st.failed
    assert st.depth == 2  # what it reached counts, no more
    assert not rp.wants_more("t0-2")
    assert all(rp.engine.states[n].failed is None for n in curves if n != "t0-2")


def test_mode_min_picks_the_lowest_prediction():
    from prehoc_ray.tune.scheduler import _picks

    rows = [
        {"candidate": "a", "group": "g", "predicted_final": 0.3},
        {"candidate": "b", "group": "g", "predicted_final": 0.1},
        {"candidate": "c", "group": "h", "predicted_final": float("nan")},
    ]
    assert _picks(rows, "min") == {"g": "b"}
    assert _picks(rows, "max") == {"g": "a"}


def test_settings_are_checked_at_construction():
    from prehoc_ray.tune import PrehocScheduler

    with pytest.raises(ValueError, match="initial_depth"):
        PrehocScheduler(budget=10, max_t=2)
    with pytest.raises(ValueError, match="invalid engine setting"):
        PrehocScheduler(budget=10, max_t=20, engine={"growth": 0.5})
    s = PrehocScheduler(budget=10, max_t=20, group_by="a/b")
    assert s._group({"a": {"b": 3}}) == "3"
    with pytest.raises(KeyError, match="group_by"):
        s._group({"a": {}})
