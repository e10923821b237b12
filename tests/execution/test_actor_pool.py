"""Slot actors for live candidates only: the pool's size, its routing, a slot's load/unload,
and a run whose slots mirror exactly what the store holds while the portfolio outnumbers them."""

from __future__ import annotations

import pytest

from prehoc_ray.execution.pool import MAX_SLOTS, SlotRouter, pool_size

TAGS = {"task": "copy", "model": "tiny-a", "config": "default"}


# ----- the pool's size and routing (no Ray) ------------------------------------------------------


def test_pool_size_follows_the_probe_concurrency_not_the_portfolio():
    assert pool_size(5000, 4) == 4
    assert pool_size(3, 16) == 3  # never more slots than candidates
    assert pool_size(5000, 100_000) == MAX_SLOTS
    assert pool_size(0, 4) == 1 and pool_size(10, 0) == 1
    with pytest.raises(ValueError, match="size"):
        SlotRouter(0)


def test_every_candidate_in_flight_has_a_slot_of_its_own():
    r = SlotRouter(3)
    assert r.acquire("a") == (0, True) and r.acquire("a") == (0, False)  # a second seed: same slot
    assert r.acquire("b") == (1, True) and r.acquire("c") == (2, True)
    r.release("b")
    # the only slot whose candidate runs nothing is b's: d takes it, a and c keep theirs
    assert r.acquire("d") == (1, True)
    assert r.serving() == {0: "a", 1: "d", 2: "c"} and r.slot_of("b") is None
    r.release("a")
    r.release("c")
    assert r.acquire("e") == (2, True)  # a's second seed still runs: c's slot, not a's
    r.release("a")
    r.release("d")
    # both idle now: the least recently acquired goes first (a's, before d's)
    assert r.acquire("f") == (0, True)
    assert r.stats.loads == 6 and r.stats.peak_serving == 3


def test_a_released_candidate_keeps_its_slot_until_another_needs_it():
    r = SlotRouter(2)
    r.acquire("a")
    r.release("a")
    assert r.acquire("a") == (0, False)  # its next probe: no reload
    r.release("a")
    assert r.acquire("b") == (1, True)  # an empty slot before an idle one


def test_settled_candidates_give_their_slot_back():
    r = SlotRouter(2)
    r.acquire("a"), r.acquire("b")
    r.release("a")
    assert r.drop("a") == 0 and r.drop("a") is None and r.drop("never") is None
    assert r.serving() == {1: "b"} and r.stats.unloads == 1
    assert r.acquire("c") == (0, True)


def test_past_the_cap_the_least_recently_used_slot_is_shared():
    r = SlotRouter(1)
    r.acquire("a")
    assert r.acquire("b") == (0, True)  # a still runs: its mirror lapses, nothing else does
    r.release("a")  # a's late end does not unpin b
    assert r.acquire("c") == (0, True) and r.slot_of("b") is None


# ----- one slot, as a plain object -----------------------------------------------------------------


def test_a_slot_loads_from_what_the_driver_knows_or_from_the_store_alike(sim_run, tmp_path):
    import shutil

    from prehoc_ray.execution.actors import SlotActor, read_assignment
    from prehoc_ray.execution.ledger import candidate_points
    from prehoc_ray.io.store import ResultStore

    d = str(shutil.copytree(sim_run.run_dir, tmp_path / "copy"))
    cid = "copy:tiny-a"
    fit = {r["candidate"]: r for r in sim_run.engine.summary()}[cid]
    from_store = SlotActor(d, "job", 0)
    from_store.load(cid, TAGS)
    told = SlotActor(d, "job", 1)
    told.load(cid, TAGS, (sim_run.engine.states[cid].points, fit))
    a, b = from_store.state(), told.state()
    assert a["points"] == b["points"] == sum(len(v) for v in candidate_points(ResultStore(d), cid).values()) > 0
    assert from_store.points == told.points
    for k in ("candidate", "depth", "seeds", "regime", "L_int", "V_opt", "predicted_final", "task"):
        assert a[k] == b[k], k
    assert read_assignment(d, 1) == (cid, TAGS)

    # calls for a candidate the slot no longer serves are dropped (the store has them)
    told.load("noisy:tiny-b", {})
    n = told.n_points
    told.add_points(cid, [{"seed": 9, "step": 10.0, "value": 0.5}])
    told.update_fit(cid, {"regime": "Noise-Dominant"})
    assert told.n_points == n and 9 not in told.points and told.state()["candidate"] == "noisy:tiny-b"
    told.unload(cid)  # not its candidate any more: nothing happens
    assert told.state()["candidate"] == "noisy:tiny-b"
    told.unload("noisy:tiny-b")
    assert told.state()["candidate"] is None and told.n_points == 0 and read_assignment(d, 1) is None


def test_a_restarted_slot_reloads_the_candidate_of_its_assignment_file(sim_run, tmp_path, monkeypatch):
    import shutil

    from prehoc_ray.execution import actors

    d = str(shutil.copytree(sim_run.run_dir, tmp_path / "copy"))
    actors.SlotActor(d, "job", 3).load("copy:tiny-b", TAGS)
    fresh = actors.SlotActor(d, "job", 3)  # a new pool's slot: the file is a dead driver's choice
    assert fresh.candidate is None
    monkeypatch.setattr(actors, "_was_restarted", lambda: True)
    back = actors.SlotActor(d, "job", 3)
    assert back.candidate == "copy:tiny-b" and back.n_points > 0 and back.state()["restarted"]


# ----- a run ---------------------------------------------------------------------------------------


def test_a_run_keeps_slots_for_live_candidates_only_and_they_mirror_the_store(
    ray_session, sim_spec, reference, tmp_path
):
    """jobs/simulated.yaml: 6 candidates, 4 probes at a time -> 4 slots. While it runs every
    probe's candidate holds a slot, no other actor of the run exists, and each slot's
    candidate has exactly the store's points; at the end every candidate settled and no slot
    serves anyone."""
    import ray

    from prehoc_ray.execution.actors import slot_name
    from prehoc_ray.execution.driver import Driver
    from prehoc_ray.io.store import ResultStore
    from tests.execution.test_loop import decisions

    ns, size = sim_spec.cluster.namespace, pool_size(6, sim_spec.allocation.max_concurrent_probes)
    assert size == 4
    checks: list[dict] = []
    unpinned: list[str] = []
    ends: list[str] = []
    told: set[str] = set()

    class Spy(Driver):
        def _pool_ended(self, cid, rows):
            if self.pool.router.slot_of(cid) is None:
                unpinned.append(cid)  # a running candidate lost its slot
            super()._pool_ended(cid, rows)

    def on_end(out: dict) -> None:
        ends.append(out["probe_id"])
        if out.get("status") == "finished":
            told.add(out["probe_id"])
        if len(ends) not in (8, 20):  # in the first round (18 probes) and in a later one
            return
        handles = [ray.get_actor(slot_name(sim_spec.name, k), namespace=ns) for k in range(size)]
        with pytest.raises(ValueError):
            ray.get_actor(slot_name(sim_spec.name, size), namespace=ns)
        states = ray.get([h.state.remote() for h in handles], timeout=60)
        # the store as far as the driver has heard (it may already hold probes that ended
        # in the same ray.wait batch, their ends not yet handled)
        pts = ResultStore(run.run_dir).read_points(finished_only=True).to_pylist()
        for s in states:
            if s["candidate"]:
                want = {
                    (p["seed"], p["step"]) for p in pts if p["candidate"] == s["candidate"] and p["probe_id"] in told
                }
                assert s["points"] == len(want), (s, len(want))
        checks.append({s["slot"]: s["points"] for s in states if s["candidate"]})

    run = Spy(sim_spec, tmp_path / "run", on_probe_end=on_end)
    res = run.run()
    assert decisions(res.candidates) == decisions(reference.summary())
    assert len(checks) == 2 and all(any(c.values()) for c in checks)  # slots held points, not only names
    assert unpinned == []
    st = run.pool.stats
    assert st.peak_serving <= size and st.loads >= 6  # every candidate was probed, through 4 slots
    assert run.pool.router.serving() == {}  # all settled: none holds a slot
