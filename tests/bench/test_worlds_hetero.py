"""The heterogeneous world: per-candidate noise, cost, late bloomers, contenders, static tasks."""

import hashlib
import time

import numpy as np
import pytest

from prehoc_ray.bench.worlds import World
from prehoc_ray.bench.worlds_hetero import heterogeneous_world, noise_variance

SEEDS = range(6)
TRUTH_KEYS = (
    "candidate",
    "group",
    "expected_final",
    "true_final",
    "L_int",
    "K",
    "alpha",
    "onset",
    "cost_per_step",
    "contender",
    "static_explained",
    "late_bloomer",
    "regime",
    "horizon",
)
MISS_KEYS = ("bias", "bias_shape", "bias_10pct", "noise_T", "bump_var", "bump_step", "bump_width")


@pytest.fixture(scope="module")
def worlds() -> list[World]:
    return [heterogeneous_world(s) for s in SEEDS]


@pytest.fixture(scope="module")
def miss_worlds() -> list[World]:
    return [heterogeneous_world(s, misspecified=True) for s in SEEDS]


@pytest.fixture(scope="module", params=[False, True], ids=["hetero", "misspecified"])
def either_worlds(request, worlds, miss_worlds) -> list[World]:
    """The tests of structure hold for both variants."""
    return miss_worlds if request.param else worlds


def _at(c, seed: int, step: float) -> float:
    st, v = c.curve(seed)
    return float(v[np.searchsorted(st, step)])


def test_structure_truth_and_order(either_worlds):
    w = either_worlds[0]
    miss = "bias" in w.truth
    assert w.name == ("hetero-miss-s0" if miss else "hetero-s0")
    assert w.tolerance == 0.02 and w.eval_every == 20 and w.probe_seeds == 2
    assert len(w.candidates) == 6 * 12
    groups = sorted(set(w.groups))
    assert len(groups) == 6 and sum(g.endswith("-static") for g in groups) == 3
    assert all(g.endswith(("-static", "-dynamic")) for g in groups)
    for k in TRUTH_KEYS + (MISS_KEYS if miss else ()):
        assert len(w.truth[k]) == len(w.candidates), k
    assert miss or not set(MISS_KEYS) & set(w.truth)
    assert list(w.truth["candidate"]) == [c.id for c in w.candidates]
    assert list(w.truth["group"]) == [c.group for c in w.candidates]
    np.testing.assert_allclose(w.truth["true_final"], w.true_finals)
    np.testing.assert_allclose(w.truth["cost_per_step"], [c.cost_per_step for c in w.candidates])
    assert np.all(w.truth["onset"][~w.truth["late_bloomer"]] == 0)
    assert np.all(w.truth["onset"][w.truth["late_bloomer"]] > 0)
    steps = np.arange(20, 2001, 20)
    for c in w.candidates:
        assert c.id.startswith(c.group + "/c") and c.n_seeds == 3 and c.horizon == 2000
        assert set(c.static) >= {"log_params"} and len(c.static) >= 3
        for st, v in c.curves:
            np.testing.assert_array_equal(st, steps)
            assert np.all(np.isfinite(v)) and np.all((v > 0.05) & (v < 1.0))  # a plausible accuracy


def test_true_final_and_probe_seeds_are_independent_runs(either_worlds):
    # Each realises its own R = m + delta: a probe seed's end does not share the full run's delta
    # (it would correlate strongly: e(horizon) is small next to the floor), nor another seed's.
    # (The misspecified world's shared bias is gone by the horizon.)
    dev_full, dev_s0, dev_s1 = [], [], []
    for w in either_worlds:
        m = w.truth["expected_final"]
        dev_full += list(w.true_finals - m)
        dev_s0 += [c.curve(0)[1][-1] - m[i] for i, c in enumerate(w.candidates)]
        dev_s1 += [c.curve(1)[1][-1] - m[i] for i, c in enumerate(w.candidates)]
    assert abs(np.corrcoef(dev_full, dev_s0)[0, 1]) < 0.2
    assert abs(np.corrcoef(dev_s0, dev_s1)[0, 1]) < 0.2


@pytest.mark.parametrize("miss", [False, True])
def test_deterministic_by_seed(miss):
    a, b, c = (heterogeneous_world(s, misspecified=miss) for s in (3, 3, 4))
    assert [x.id for x in a.candidates] == [x.id for x in b.candidates]
    for x, y in zip(a.candidates + a.history, b.candidates + b.history):
        assert (
            x.id == y.id
            and x.static == y.static
            and x.true_final == y.true_final
            and x.cost_per_step == y.cost_per_step
        )
        for (s1, v1), (s2, v2) in zip(x.curves, y.curves):
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(v1, v2)
    for k in a.truth:
        np.testing.assert_array_equal(a.truth[k], b.truth[k])
    assert not np.allclose(np.sort(a.true_finals), np.sort(c.true_finals))


def test_costs_spread_over_model_tiers(either_worlds):
    for w in either_worlds:
        cost = np.array([c.cost_per_step for c in w.candidates])
        assert cost.max() / cost.min() >= 10
        assert cost.min() >= 0.002 and cost.max() <= 0.06
        lp = np.array([c.static["log_params"] for c in w.candidates])
        assert np.corrcoef(np.log(cost), lp)[0, 1] > 0.95  # log_params tells the cost tier
        for g in set(w.groups):  # every task has cheap and dear candidates
            cg = cost[w.groups == g]
            assert cg.max() / cg.min() >= 10


def test_each_task_has_two_or_three_close_contenders(either_worlds):
    for w in either_worlds:
        tau, tr = w.tolerance, w.truth
        for g in set(w.groups):
            idx = np.flatnonzero(w.groups == g)
            m, cont = tr["expected_final"][idx], tr["contender"][idx].astype(bool)
            gap = (m.max() - m) / tau
            assert 2 <= cont.sum() <= 3
            assert cont[np.argmax(m)]
            assert np.all(gap[cont] <= 1.0)
            assert np.all(gap[~cont] >= 3.0) and np.all(gap[~cont] <= 15.0)


def test_late_bloomers_are_under_rated_by_a_short_probe(worlds):
    under_b, under_n = [], []
    for w in worlds:
        tr, tau = w.truth, w.tolerance
        for i, c in enumerate(w.candidates):
            d = np.mean([tr["expected_final"][i] - _at(c, s, 0.1 * c.horizon) for s in range(c.n_seeds)]) / tau
            (under_b if tr["late_bloomer"][i] else under_n).append(d)
            if tr["late_bloomer"][i]:
                assert 0.05 * c.horizon <= tr["onset"][i] <= 0.40 * c.horizon
    n = len(under_b) + len(under_n)
    assert 0.15 <= len(under_b) / n <= 0.35
    assert np.mean(under_b) > 1.0
    assert abs(np.mean(under_n)) < 1.0


def test_true_finals_scatter_by_each_candidates_floor(either_worlds):
    tr = {k: np.concatenate([w.truth[k] for w in either_worlds]) for k in ("true_final", "expected_final", "L_int")}
    tau2 = either_worlds[0].tolerance ** 2
    assert tr["L_int"].min() >= 0.1 * tau2 * 0.999 and tr["L_int"].max() <= 4 * tau2 * 1.001
    assert tr["L_int"].max() / tr["L_int"].min() > 10  # floors differ across candidates
    z2 = (tr["true_final"] - tr["expected_final"]) ** 2 / tr["L_int"]
    n = z2.size  # E z2 = 1, sd of the mean = sqrt(2 / n)
    assert abs(z2.mean() - 1) < 4 * np.sqrt(2 / n)
    # per candidate, not a shared noise level: the low and the high floors each match their own
    lo = tr["L_int"] < np.median(tr["L_int"])
    for part in (lo, ~lo):
        assert abs(z2[part].mean() - 1) < 4 * np.sqrt(2 / part.sum())


def test_probe_seeds_scatter_by_floor_plus_optimization_noise(worlds):
    # y(c) - m ~ N(0, L_int + K c^-alpha) once the transients are gone: at the horizon for
    # everyone, and at a quarter of it for the candidates that are not late bloomers.
    for frac, bloomers_too in ((1.0, True), (0.25, False)):
        z2 = []
        for w in worlds:
            tr = w.truth
            for i, c in enumerate(w.candidates):
                if tr["late_bloomer"][i] and not bloomers_too:
                    continue
                step = frac * c.horizon
                var = tr["L_int"][i] + tr["K"][i] * step ** (-tr["alpha"][i])
                z2 += [(_at(c, s, step) - tr["expected_final"][i]) ** 2 / var for s in range(c.n_seeds)]
        z2 = np.array(z2)
        assert abs(z2.mean() - 1) < 0.2, (frac, z2.mean())
    # the optimization noise differs across candidates and shrinks with depth
    tr = worlds[0].truth
    first = tr["K"] * 20.0 ** (-tr["alpha"])
    assert first.max() / first.min() > 5 and np.ptp(tr["alpha"]) > 0.3


def test_history_per_task(either_worlds):
    for w in either_worlds:
        ids = {c.id for c in w.candidates}
        assert not ids & {h.id for h in w.history}
        assert len({h.id for h in w.history}) == len(w.history)
        for g in set(w.groups):
            hist = [h for h in w.history if h.group == g]
            assert len(hist) == 16
            for h in hist:
                st, v = h.curve(0)
                assert st[-1] == h.horizon and np.all(np.isfinite(v)) and np.isfinite(h.true_final)
                assert set(h.static) == set(w.candidates[0].static)
    miss = "bias" in either_worlds[0].truth
    small = heterogeneous_world(1, n_tasks=3, candidates_per_task=5, n_history=4, misspecified=miss)
    assert len(small.candidates) == 15 and len(small.history) == 12


def _r2(X: np.ndarray, y: np.ndarray) -> float:
    X = np.column_stack([np.ones(len(y)), X])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return float(1 - np.var(y - X @ beta) / np.var(y))


def test_static_features_explain_only_the_static_tasks(either_worlds):
    # Expected finals of the candidates; the past runs' expected finals are not exposed, so
    # their realised finals stand in (the floor's noise only makes the >= 0.8 check harder).
    r2 = {True: [], False: []}
    for w in either_worlds:
        names = sorted(w.candidates[0].static)
        for g in set(w.groups):
            idx = np.flatnonzero(w.groups == g)
            hist = [h for h in w.history if h.group == g]
            X = np.array(
                [[w.candidates[i].static[k] for k in names] for i in idx] + [[h.static[k] for k in names] for h in hist]
            )
            y = np.r_[w.truth["expected_final"][idx], [h.true_final for h in hist]]
            explained = bool(w.truth["static_explained"][idx[0]])
            assert explained == g.endswith("-static")
            assert np.all(w.truth["static_explained"][idx] == explained)
            r2[explained].append(_r2(X, y))
    assert min(r2[True]) >= 0.8
    assert np.mean(r2[False]) <= 0.45 and max(r2[False]) < 0.7
    assert np.mean(r2[True]) - np.mean(r2[False]) > 0.5


@pytest.mark.parametrize("miss", [False, True])
def test_builds_fast(miss):
    heterogeneous_world(0, misspecified=miss)
    best = min(_timed(s, miss) for s in range(3))
    assert best < 0.5


def _timed(seed: int, miss: bool = False) -> float:
    t = time.perf_counter()
    heterogeneous_world(seed, misspecified=miss)
    return time.perf_counter() - t


# ----- the default world is the one it was before the misspecified variant -----------------------
def _fingerprint(w: World) -> tuple[str, dict[str, tuple[float, float]]]:
    """A hash of the labels and, per field, (sum, cosine-weighted sum) of the numbers: equal to
    1e-12 relative, not bit for bit, so that a libm's last ulp cannot fail it."""
    units = w.candidates + w.history
    labels = hashlib.sha256(
        repr(
            [(c.id, c.group, c.horizon, sorted(c.static)) for c in units]
            + [list(w.truth["regime"]), list(w.truth["candidate"])]
        ).encode()
    ).hexdigest()[:16]

    def mix(a) -> tuple[float, float]:
        a = np.asarray(a, float).ravel()
        return float(a.sum()), float(a @ np.cos(np.arange(a.size)))

    return labels, {
        "curves": mix(np.concatenate([v for c in units for _, v in c.curves])),
        "steps": mix(np.concatenate([st for c in units for st, _ in c.curves])),
        "finals": mix([c.true_final for c in units]),
        "costs": mix([c.cost_per_step for c in units]),
        "static": mix([[c.static[k] for k in sorted(c.static)] for c in units]),
        **{k: mix(v) for k, v in w.truth.items() if v.dtype != object},
    }


# Computed from heterogeneous_world before `misspecified` existed.
FINGERPRINTS = {
    0: (
        "d6adde606bdb1517",
        {
            "curves": (21167.94757311086, -0.9320758778391793),
            "steps": (31512000.0, -6862.194720947699),
            "finals": (117.02379185680469, 1.6492741917806404),
            "costs": (2.9337527371032253, 0.23402868057577603),
            "static": (938.1288761227065, -1.0934520876108538),
            "task": (180.0, -10.584502940029566),
            "expected_final": (49.706303139872674, 1.3338704105799932),
            "true_final": (50.17463823359303, 1.3579552060223223),
            "L_int": (0.03257444463977698, -0.0030546782830303504),
            "K": (1.2182655558012716, -0.08259607347368558),
            "K_first": (0.12459907260349738, -0.01691708891492178),
            "alpha": (51.02601678985923, 0.6536907333719009),
            "L0": (0.31573328838977704, -0.0075933733346932215),
            "late_bloomer": (15.0, 3.2835363364343477),
            "onset": (8153.711803321887, 1067.3775691184849),
            "bloom_depth": (1.9775802033206251, 0.5363011167099327),
            "cost_per_step": (1.314906753528129, 0.22694353482408586),
            "tier": (140.0, 17.039921691047798),
            "contender": (14.0, 2.2680905407826057),
            "static_explained": (36.0, 1.8238899564357784),
            "static_pred": (50.16976512552063, 1.6980798104488006),
            "static_resid_var": (0.2831588437500001, -0.004538695051662871),
            "horizon": (144000.0, 2431.8711372935554),
        },
    ),
    1: (
        "0c96ac8cd9a9a6c2",
        {
            "curves": (3942.1730661413867, 0.6084384516790262),
            "steps": (5757000.0, 826.9272235010428),
            "finals": (18.995257158964865, 0.623985216030356),
            "costs": (0.4101569002825927, 0.06623737793344381),
            "static": (148.32522195032823, 3.6366874092891797),
            "task": (15.0, 1.54892942622595),
            "expected_final": (10.542361694796861, 0.8165607930166762),
            "true_final": (10.506632122972338, 0.7450589468058835),
            "L_int": (0.004577063962495657, 0.0013142654978678685),
            "K": (0.33402258802406026, 0.02909911211176359),
            "K_first": (0.034383465819750075, 0.004500334236499384),
            "alpha": (10.779002482593253, 0.688853599636077),
            "L0": (0.04933393896249567, 0.004103647024258205),
            "late_bloomer": (3.0, 2.243832472113592),
            "onset": (1095.8571881182168, 925.1289005406458),
            "bloom_depth": (0.42346107062649596, 0.32497992358347233),
            "cost_per_step": (0.2809900194231247, 0.08013276445248392),
            "tier": (31.0, 7.979921139858105),
            "contender": (8.0, -0.24458127828061363),
            "static_explained": (10.0, 1.1696448058613966),
            "static_pred": (10.509300388627143, 0.9729362339953534),
            "static_resid_var": (0.044756875000000015, 0.002789381526390337),
            "horizon": (30000.0, 2950.0318198453333),
        },
    ),
}


@pytest.mark.parametrize("seed", [0, 1])
def test_default_world_is_unchanged(seed):
    w = heterogeneous_world(0) if seed == 0 else heterogeneous_world(1, n_tasks=3, candidates_per_task=5, n_history=4)
    assert w.name == f"hetero-s{seed}"
    labels, sums = _fingerprint(w)
    want_labels, want = FINGERPRINTS[seed]
    assert labels == want_labels
    assert set(sums) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(sums[k], v, rtol=1e-12, atol=1e-12, err_msg=k)
    if seed == 0:  # and a few values as they were, to the last digit printed
        first = [0.6073904722792927, 0.6443478221348294, 0.6501078131754265]
        assert w.candidates[0].curves[0][1][:3].tolist() == pytest.approx(first, rel=1e-13)
        assert w.candidates[0].true_final == 0.6620561660740645 and w.history[-1].true_final == 0.6832959633286892


# ----- the misspecified variant -----------------------------------------------------------------
def test_misspecified_world_is_the_same_world_with_other_curves(worlds, miss_worlds):
    for w, v in zip(worlds, miss_worlds):
        assert [c.id for c in w.candidates] == [c.id for c in v.candidates]
        assert [h.id for h in w.history] == [h.id for h in v.history]
        for a, b in zip(w.candidates + w.history, v.candidates + v.history):
            assert a.static == b.static and a.cost_per_step == b.cost_per_step and a.true_final == b.true_final
            assert a.n_seeds == b.n_seeds and a.horizon == b.horizon
        for k in w.truth:
            np.testing.assert_array_equal(w.truth[k], v.truth[k], err_msg=k)
        differ = np.mean([not np.allclose(a.curve(0)[1], b.curve(0)[1]) for a, b in zip(w.candidates, v.candidates)])
        assert differ == 1.0


def _dev_at(w: World, frac: float) -> np.ndarray:
    """(candidates, seeds) value at frac of the horizon minus the expected final, in tau."""
    m = w.truth["expected_final"]
    d = [[_at(c, s, frac * c.horizon) - m[i] for s in range(c.n_seeds)] for i, c in enumerate(w.candidates)]
    return np.array(d) / w.tolerance


def test_misspecified_bias_is_shared_by_the_seeds(worlds, miss_worlds):
    # Away from the late bloomers (whose shared transient both variants have), the value at 10% of
    # the horizon is off the expected final by an amount its seeds share in the misspecified world
    # only; it is the truth's bias there, mostly an under-rating, of the size of a contender gap.
    corr = {}
    for name, ws in (("hetero", worlds), ("miss", miss_worlds)):
        d = np.concatenate([_dev_at(w, 0.1)[~w.truth["late_bloomer"]] for w in ws])
        corr[name] = [np.corrcoef(d[:, a], d[:, b])[0, 1] for a, b in ((0, 1), (0, 2), (1, 2))]
        if name == "miss":
            b10 = np.concatenate([w.truth["bias_10pct"][~w.truth["late_bloomer"]] for w in ws]) / ws[0].tolerance
            assert np.corrcoef(d.mean(axis=1), b10)[0, 1] > 0.7
            assert np.mean(d) < -0.4  # early curves under-rate the final
    assert min(corr["miss"]) > 0.35, corr
    assert max(np.abs(corr["hetero"])) < 0.15, corr
    tr = {k: np.concatenate([w.truth[k] for w in miss_worlds]) for k in ("bias", "bias_shape")}
    size = np.abs(tr["bias"]) / miss_worlds[0].tolerance
    assert size.min() >= 0.5 and size.max() <= 3.0
    assert 0.65 <= np.mean(tr["bias"] < 0) <= 0.85
    assert set(tr["bias_shape"]) == {"cosine", "linear", "logistic", "exp"}


def test_misspecified_finals_stay_unbiased(miss_worlds):
    # The bias is gone by the horizon: the full run (true_final) and each probe seed's last value
    # scatter around the expected final with mean 0 and their model variance (chi-square-ish).
    zf, ze, dev_full, dev_early = [], [], [], []
    for w in miss_worlds:
        tr = w.truth
        rw, bump = noise_variance(w)
        m = tr["expected_final"]
        zf += list((tr["true_final"] - m) / np.sqrt(tr["L_int"]))
        for i, c in enumerate(w.candidates):
            ze += [
                (c.curve(s)[1][-1] - m[i]) / np.sqrt(tr["L_int"][i] + rw[i, -1] + bump[i, -1]) for s in range(c.n_seeds)
            ]
        nb = ~tr["late_bloomer"]
        dev_full += list((tr["true_final"] - m)[nb] / w.tolerance)
        dev_early += list(_dev_at(w, 0.1)[nb].mean(axis=1))
    for z in (np.array(zf), np.array(ze)):
        n = z.size
        assert abs(z.mean()) < 4 / np.sqrt(n)
        assert abs(np.mean(z**2) - 1) < 4 * np.sqrt(2 / n)
    # the full run does not carry the probe seeds' shared deviation
    assert abs(np.corrcoef(dev_full, dev_early)[0, 1]) < 0.15


def _late_increments(ws: list[World]) -> np.ndarray:
    """Increments over the second half of the horizon of seed 0 minus seed 1 (the shared parts
    cancel), each divided by its model sd."""
    z = []
    for w in ws:
        rw, _ = noise_variance(w)
        st = w.candidates[0].curve(0)[0]
        late = (st >= 0.5 * st[-1])[1:]
        for i, c in enumerate(w.candidates):
            d = np.diff(c.curve(0)[1] - c.curve(1)[1])[late]
            z += list(d / np.sqrt(-2 * np.diff(rw[i])[late]))
    return np.array(z)


def _excess_kurtosis(z: np.ndarray) -> float:
    return float(np.mean(z**4) / np.mean(z**2) ** 2 - 3)


def test_misspecified_noise_is_heavy_tailed(worlds, miss_worlds):
    z, z0 = _late_increments(miss_worlds), _late_increments(worlds)
    for x in (z, z0):  # the same variance as the model says
        assert abs(x.var() - 1) < 0.1
    # t(3): excess kurtosis ~3.5 after the clip, halved by the seed difference; Gaussian: 0
    assert _excess_kurtosis(z) > 1
    assert abs(_excess_kurtosis(z0)) < 0.3


def test_misspecified_noise_variance_is_not_a_power_law(miss_worlds):
    # At the warmup bump, and early on for the exponential decays, the seeds scatter more than
    # K c^-alpha says; noise_variance(world) accounts for it.
    ratio_pl = {"bump": [], "exp": []}
    ratio_model = {"bump": [], "exp": []}
    for w in miss_worlds:
        tr = w.truth
        rw, bump = noise_variance(w)
        st = w.candidates[0].curve(0)[0]
        n_exp = np.isfinite(tr["noise_T"]).mean()
        assert 0.2 <= n_exp <= 0.5 and 0.35 <= (tr["bump_var"] > 0).mean() <= 0.65
        for i, c in enumerate(w.candidates):
            if tr["bump_var"][i] > 0 and not np.isfinite(tr["noise_T"][i]):
                j, kind = np.abs(st - tr["bump_step"][i]) <= 0.5 * tr["bump_width"][i], "bump"
            elif np.isfinite(tr["noise_T"][i]) and tr["bump_var"][i] == 0:
                j, kind = (st >= 40) & (st <= 160), "exp"
            else:
                continue
            y = np.array([c.curve(s)[1][j] for s in range(c.n_seeds)])
            ms = np.var(y, axis=0, ddof=1)  # the shared bias and transients drop out
            ratio_pl[kind].append(np.sum(ms) / np.sum(tr["L_int"][i] + tr["K"][i] * st[j] ** -tr["alpha"][i]))
            ratio_model[kind].append(np.sum(ms) / np.sum(tr["L_int"][i] + rw[i, j] + bump[i, j]))
    for kind in ("bump", "exp"):
        assert len(ratio_pl[kind]) > 30
        # The floor L_int, the same in both, dilutes the ratio to the power law (~1.4 on seeds 0-9);
        # with 3 seeds and t tails the ratio to the model scatters by ~0.1 about 1 (~1.00 with 60).
        assert np.mean(ratio_pl[kind]) > 1.25, (kind, np.mean(ratio_pl[kind]))
        assert abs(np.mean(ratio_model[kind]) - 1) < 0.2, (kind, np.mean(ratio_model[kind]))
    # the exponential walks start and end where the power law does, cross it at sqrt(e H) = 200,
    # are above it before and below it after
    tr = miss_worlds[0].truth
    rw, _ = noise_variance(miss_worlds[0])
    ex = np.isfinite(tr["noise_T"])
    pl = tr["K"][:, None] * np.arange(20.0, 2001.0, 20.0)[None, :] ** -tr["alpha"][:, None]
    np.testing.assert_allclose(rw[ex][:, [0, 9, -1]], pl[ex][:, [0, 9, -1]], rtol=1e-4)
    assert np.all(rw[ex][:, 1:9] > pl[ex][:, 1:9]) and np.all(rw[ex][:, 10:-1] < pl[ex][:, 10:-1])
    np.testing.assert_array_equal(rw[~ex], pl[~ex])


def test_misspecified_late_bloomers_still_under_rated(miss_worlds):
    under_b, under_n = [], []
    for w in miss_worlds:
        d = -_dev_at(w, 0.1).mean(axis=1)
        under_b += list(d[w.truth["late_bloomer"]])
        under_n += list(d[~w.truth["late_bloomer"]])
    assert np.mean(under_b) - np.mean(under_n) > 1.0
