"""Paired bootstrap intervals: coverage against known truth, and verdicts."""

import numpy as np
import pytest

from prehoc_ray.bench.stats import Verdict, bootstrap_mean_ci, paired_difference, sign_flip_p


def test_bootstrap_interval_covers_the_true_mean_at_about_its_level():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 300
    for _ in range(trials):
        x = rng.normal(0.7, 2.0, size=30)
        lo, hi = bootstrap_mean_ci(x, n_boot=2000, seed=int(rng.integers(1 << 30)))
        hits += lo <= 0.7 <= hi
    # percentile bootstrap of a mean with n=30: a little under nominal; a wrong interval
    # (e.g. +-1 sd of the data, or the sd not divided by sqrt(n)) lands far from 0.95
    assert 0.89 <= hits / trials <= 0.98


def test_paired_beats_unpaired_when_worlds_differ_a_lot():
    rng = np.random.default_rng(1)
    world_effect = rng.normal(0, 5, size=30)
    a = {k: world_effect[k] + 1.0 + rng.normal(0, 0.3) for k in range(30)}
    b = {k: world_effect[k] + 1.5 + rng.normal(0, 0.3) for k in range(30)}
    d = paired_difference(a, b)
    assert d.verdict is Verdict.PASS and d.hi < 0 and d.mean == pytest.approx(-0.5, abs=0.2)
    assert paired_difference(b, a).verdict is Verdict.LOSS


def test_identical_or_noisy_regrets_tie():
    a = {k: 0.1 for k in range(10)}
    assert paired_difference(a, dict(a)).verdict is Verdict.TIE
    rng = np.random.default_rng(2)
    noisy = paired_difference({k: rng.normal() for k in range(8)}, {k: rng.normal() for k in range(8)})
    assert noisy.lo < 0 < noisy.hi and noisy.verdict is Verdict.TIE


def test_only_shared_units_are_paired_and_too_few_get_no_verdict():
    d = paired_difference({1: 0.0, 2: 0.0, 3: 1.0}, {2: 1.0, 3: 2.0, 4: 9.0})
    assert d.n == 2 and d.mean == pytest.approx(-1.0)
    assert d.verdict is Verdict.NA  # two tasks "always worse" is not evidence


def test_verdicts_are_rarely_wrong_when_there_is_no_difference():
    # 10 worlds of normal differences with mean 0: a PASS or LOSS is a false verdict. The
    # percentile bootstrap alone gave about 10% here; the rule must stay near its 5%.
    rng = np.random.default_rng(3)
    wrong = 0
    trials = 200
    for _ in range(trials):
        x = rng.normal(0, 1, size=10)
        d = paired_difference(dict(enumerate(x)), {k: 0.0 for k in range(10)}, seed=int(rng.integers(1 << 30)))
        wrong += d.verdict in (Verdict.PASS, Verdict.LOSS)
    assert wrong / trials <= 0.07


def test_sign_flip_p_is_exact_for_small_samples():
    # all 5 differences negative and equal: only the all-negative and all-positive flips are as
    # extreme, so p = 2 / 2^5
    assert sign_flip_p(np.full(5, -1.0)) == pytest.approx(2 / 32)
    assert sign_flip_p(np.zeros(7)) == 1.0
