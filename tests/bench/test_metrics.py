"""The selection rule and the metrics on hand-made predictions."""

import numpy as np
import pytest

from prehoc_ray.bench.metrics import evaluate, filled_predictions, select
from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.bench.worlds import synthetic_world


@pytest.fixture(scope="module")
def world():
    return synthetic_world(9, seed=2, n_history=0)


def result(world, pred, std=None):
    n = len(world.candidates)
    return PolicyResult(
        "x", np.asarray(pred, float), np.full(n, np.nan) if std is None else np.asarray(std, float), 0.0, np.zeros(n)
    )


def test_perfect_predictions_have_zero_regret_and_full_rank(world):
    y = world.true_finals
    m = evaluate(world, result(world, y, np.full(y.size, 1e-9)), 1.0)
    assert m["regret"] == 0 and m["spearman"] == pytest.approx(1.0) and m["rmse"] == 0 and m["coverage"] == 1.0


def test_reversed_predictions_pick_the_worst(world):
    y, G = world.true_finals, world.groups
    m = evaluate(world, result(world, -y), 1.0)
    expected = np.mean([y[G == g].max() - y[G == g].min() for g in sorted(set(G))])
    assert m["regret"] == pytest.approx(expected)
    assert m["spearman"] == pytest.approx(-1.0)


def test_unpredicted_candidates_take_the_family_mean(world):
    y, G = world.true_finals, world.groups
    pred = y.copy()
    g0 = np.flatnonzero(G == G[0])
    pred[g0[0]] = np.nan
    filled = filled_predictions(world, pred)
    assert filled[g0[0]] == pytest.approx(np.mean(y[g0[1:]]))
    picks = select(world, pred)
    assert set(picks) == set(G) and all(G[i] == g for g, i in picks.items())


def test_coverage_counts_only_candidates_with_a_std(world):
    y = world.true_finals
    std = np.full(y.size, np.nan)
    std[:3] = 1.0  # huge intervals: covered
    m = evaluate(world, result(world, y + 0.01, std), 1.0)
    assert m["coverage"] == 1.0 and m["std_frac"] == pytest.approx(3 / y.size)
