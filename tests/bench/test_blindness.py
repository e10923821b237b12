"""Policies see only what they paid for: poisoning the true finals and every curve point past
the depth a policy bought must not change its picks or predictions."""

from dataclasses import replace

import numpy as np
import pytest

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.metrics import picks_of
from prehoc_ray.bench.policies import get_policy
from prehoc_ray.bench.worlds import World, deberta_world, demo_world, synthetic_world
from prehoc_ray.bench.worlds_hetero import heterogeneous_world

POLICIES = [
    "prehoc",
    "prehoc_prediction",
    "prehoc_history",
    "uniform",
    "sh",
    "static_only",
    "lc_extrapolation",
    "tuneahead",
    "asha",
]


def poisoned(world: World, reached: dict[tuple[int, int], int], seed: int = 99) -> World:
    """The same world with random true finals and random values past every bought depth."""
    rng = np.random.default_rng(seed)
    cands = []
    for i, c in enumerate(world.candidates):
        curves = []
        for s, (st, v) in enumerate(c.curves):
            depth = reached.get((i, s), 0)
            v2 = np.where(st <= depth, v, rng.uniform(-5, 5, size=v.size))
            curves.append((st.copy(), v2))
        cands.append(replace(c, curves=tuple(curves), true_final=float(rng.uniform(-5, 5))))
    truth = {
        k: (rng.uniform(-5, 5, size=len(v)) if k in ("expected_final", "true_final") else v)
        for k, v in world.truth.items()
    }
    return replace(world, candidates=cands, truth=truth)


@pytest.fixture(scope="module")
def worlds():
    return {
        "synthetic": synthetic_world(15, seed=3, n_history=10),
        "hetero": heterogeneous_world(5, n_tasks=3, candidates_per_task=8),
        "deberta": deberta_world(10, 2, seed=2, n_history=10),
        "demo": demo_world(1),
    }


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("kind", ["synthetic", "hetero", "deberta", "demo"])
def test_picks_do_not_depend_on_what_was_not_bought(worlds, name, kind):
    world = worlds[kind]
    if name in ("prehoc_history", "static_only", "tuneahead") and not world.history:
        pytest.skip("needs past runs")
    frac = 0.05 if kind == "demo" else 0.1
    budget = frac * world.full_cost
    m1 = Market(world, budget)
    r1 = get_policy(name)(m1, seed=0)
    bad = poisoned(world, m1.reached())
    m2 = Market(bad, budget)
    r2 = get_policy(name)(m2, seed=0)
    assert m2.reached() == m1.reached()
    assert picks_of(world, r1) == picks_of(bad, r2)
    np.testing.assert_array_equal(r1.predicted, r2.predicted)


def test_the_poison_is_strong_enough_to_be_seen(worlds):
    """A cheating policy that reads the world's finals changes its picks under the poison."""
    world = worlds["synthetic"]
    bad = poisoned(world, {})
    assert picks_of(world, _truth_reader(world)) != picks_of(bad, _truth_reader(bad))


def _truth_reader(world):
    from prehoc_ray.bench.policies import PolicyResult

    n = len(world.candidates)
    return PolicyResult("cheat", world.true_finals, np.full(n, np.nan), 0.0, np.zeros(n))
