"""Admission of a round's probes (execution/admission.py): pure accounting, no Ray."""

from __future__ import annotations

import pytest

from prehoc_ray.execution.admission import COLD_FACTOR, CostScale, Estimate, RoundAdmission

GUESS = Estimate(1.0, guessed=True)


def round_of(budget: float, spent: float = 0.0, scale: CostScale | None = None, **kw) -> RoundAdmission:
    return RoundAdmission(budget, spent, scale or CostScale(), **kw)


def test_the_scale_is_cold_until_measured_then_a_high_quantile_of_the_ratios():
    s = CostScale()
    assert s.factor(True) == COLD_FACTOR and s.factor(False) == 1.0
    s.observe(Estimate(2.0, True), 6.0)
    assert s.factor(True) == pytest.approx(3.0) and s.factor(False) == 1.0
    s.observe(Estimate(1.0, True), 5.0)
    assert s.factor(True) == pytest.approx(5.0)  # the largest, with few measurements
    for r in [1.0] * 17:
        s.observe(Estimate(1.0, True), r)
    assert s.factor(True) == pytest.approx(3.0)  # the 0.9 quantile of 19: the top one left out
    s.observe(Estimate(1.0, True), 1.0)
    assert s.factor(True) == pytest.approx(1.0)  # of 20: the top two
    s.observe(Estimate(4.0, False), 6.0)
    assert s.factor(False) == pytest.approx(1.5)
    assert s.scaled(Estimate(2.0, False)) == pytest.approx(3.0)


def test_the_first_probe_of_a_run_starts_if_its_guess_fits_then_increments_at_the_cold_factor():
    adm = round_of(10.0)
    for seed in range(3):
        adm.add(f"a{seed}", "a", GUESS)
    adm.add("b0", "b", GUESS)
    # 3 seeds x 1.0 x 4 = 12 > 10: the increment would not fit, but nothing is measured yet
    assert adm.next_admissible(0.0) == "a0"
    adm.start("a0", 0.0)
    # a0 running (4) + a2 reserved (4) + a1 (4) = 12 > 10: wait for the measurement
    assert adm.next_admissible(0.0) is None
    adm.end("a0", 1.5, finished=True)  # 1.5 x the guess
    assert adm.scale.factor(True) == pytest.approx(1.5)
    assert adm.next_admissible(1.0) == "a1"
    adm.start("a1", 1.0)
    assert adm.next_admissible(1.0) == "a2"
    adm.start("a2", 1.0)
    # spent 1.5 + a1, a2 running 3.0 + b's increment 1.5 = 6 <= 10
    assert adm.next_admissible(1.0) == "b0"


def test_a_new_increment_needs_all_its_seeds_to_fit_and_started_ones_are_reserved():
    scale = CostScale()
    scale.observe(Estimate(1.0, False), 1.0)
    adm = round_of(10.0, spent=2.0, scale=scale)
    for g in "abc":
        for seed in range(3):
            adm.add(f"{g}{seed}", g, Estimate(1.0, False))
    order = []
    while (k := adm.next_admissible(0.0)) is not None:
        adm.start(k, 0.0)
        order.append(k)
    # 2 + a (3) + b (3) = 8; c's 3 more would make 11
    assert order == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert adm.committed(0.0) == pytest.approx(8.0)
    # measured costs below the estimates free room: the increment starts as soon as it fits
    for k in order[:3]:
        adm.end(k, 0.5, finished=True)
    assert adm.committed(0.0) == pytest.approx(2.0 + 1.5 + 3.0)
    assert adm.next_admissible(0.0) == "c0"  # 6.5 + 3 <= 10


def test_a_running_probe_costs_at_least_its_wall_time():
    scale = CostScale()
    scale.observe(Estimate(1.0, False), 1.0)
    adm = round_of(10.0, scale=scale, devices=2.0)
    adm.add("a0", "a", Estimate(1.0, False))
    adm.add("b0", "b", Estimate(1.0, False))
    adm.start("a0", 0.0)
    assert adm.committed(1.0) == pytest.approx(2.0)  # 1 s x 2 devices > the estimate
    assert adm.next_admissible(1.0) == "b0"
    assert adm.committed(4.6) == pytest.approx(9.2)
    assert adm.next_admissible(4.6) is None  # 9.2 + 1 > 10
    # the simulated backend's costs are not wall time
    sim = round_of(10.0, scale=scale, devices=2.0, wall_clock=False)
    sim.add("a0", "a", Estimate(1.0, False))
    sim.start("a0", 0.0)
    assert sim.committed(100.0) == pytest.approx(1.0)


def test_failed_attempts_are_charged_and_retries_wait_again():
    scale = CostScale()
    scale.observe(Estimate(1.0, False), 1.0)
    adm = round_of(3.0, scale=scale)
    adm.add("a0", "a", Estimate(1.0, False))
    adm.start("a0", 0.0)
    adm.end("a0", 1.5, finished=False, retry=True)
    assert adm.spent == pytest.approx(1.5) and adm.waiting == 1 and adm.running == 0
    assert adm.next_admissible(0.0) == "a0"
    adm.start("a0", 0.0)
    adm.end("a0", 1.2, finished=False, retry=True)
    assert adm.next_admissible(0.0) is None  # 2.7 + 1.0 > 3
    assert adm.withdraw_waiting() == ["a0"] and adm.waiting == 0
    assert scale.factor(False) == 1.0  # failed attempts teach nothing about the cost


def test_the_guarantee_spend_stays_within_one_increment_of_the_budget():
    """Probes 3x and 6x dearer than guessed, four at a time: starting an order only when the
    projection fits keeps the total within one increment (all seeds of one candidate) of the
    budget, and most of the budget is still used."""
    for slow in (3.0, 6.0):
        budget, seeds, steps = 100.0, 3, 10
        scale = CostScale()
        spent, rnd = 0.0, 0
        costs = {g: 0.1 * (1 + (i % 5) / 8) for i, g in enumerate("abcdefghijklmnopqrstuvwxyz")}
        measured: dict[str, float] = {}
        while True:  # rounds: every candidate not yet probed asks for one increment
            todo = [g for g in costs if g not in measured]
            if not todo:
                break
            adm = round_of(budget, spent, scale)
            for g in todo:
                for s in range(seeds):
                    adm.add(f"{g}{s}", g, Estimate(0.1 * steps, guessed=True))
            running: list[tuple[float, str]] = []
            t = 0.0
            while adm.waiting or running:
                while len(running) < 4 and (k := adm.next_admissible(t)) is not None:
                    adm.start(k, t)
                    running.append((t + costs[k[0]] * steps * slow, k))
                if not running:
                    break
                running.sort()
                t, k = running.pop(0)
                adm.end(k, costs[k[0]] * steps * slow, finished=True)
                measured[k[0]] = costs[k[0]]
            spent = adm.spent
            left = adm.withdraw_waiting()
            rnd += 1
            if adm.started == 0 or not left:
                break
        increment = max(costs.values()) * steps * slow * seeds
        assert spent <= budget + increment, (slow, spent)
        assert spent >= 0.6 * budget, (slow, spent)
