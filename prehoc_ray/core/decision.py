"""Decision-aware allocation: spend probes where they change which full fine-tune a task runs.

What users pay for is the per-task choice (CandidateInfo.group) of which candidate to fine-tune
in full. A probe is worth what it is expected to remove from the regret of that choice, not
how much prediction variance it removes: a candidate 15 points behind its task's leader needs
no precision at all, two contenders half a point apart need a lot.

Beliefs. Per task, independent normal beliefs about each candidate's EXPECTED final m_i (the
mean over runs). The realised final of a full run carries its own run-to-run noise L_int, which
no probe removes, so beliefs are about m_i: S seeds probed to depth c estimate m_i by their
mean extrapolation with variance (L_int + K c^-alpha) / S (core/decay.py; the engine's
_belief_variance), plus the curve model's back-tested extrapolation error that the seeds share). Extending the probe from c to c' removes
v_i = K (c^-alpha - c'^-alpha) / S of it. With one seed there is no dispersion to fit K and
alpha; the engine then believes the curve model's own extrapolation error, measured by a
rolling-origin back-test within the task (`backtest_error`, `extrapolation_variance`).

Value of an increment: the knowledge gradient (Frazier, Powell & Dayanik 2008, "A
knowledge-gradient policy for sequential information collection", SIAM J. Control Optim.
47(5)) for independent normal beliefs,

    KG_i = s~_i f(-|mu_i - max_{j != i} mu_j| / s~_i),  s~_i = sqrt(v_i),  f(z) = z Phi(z) + phi(z),

the expected increase of max_j mu_j after the measurement: the expected regret the increment
removes. KG is myopic: a small increment moves a belief too little to change the choice, so its
value per cost underrates candidates that need a deeper look (the value of information is not
concave in the amount bought; Frazier & Powell 2010, "Paradoxes in learning and the marginal
value of information", Decision Analysis 7(4)). We use their remedy KG(*): for every candidate,
the best value per device-second over 1..m successive increments (depths growth^k x c up to the
probe cap), KG(c -> c_k) / cost(c -> c_k). The engine then buys the first increment of the
candidate with the best ratio and decides again when it returns (a rolling horizon, as in
Ryzhov, Powell & Frazier 2012, "The knowledge gradient algorithm for a general class of online
learning problems", Oper. Res. 60(1)). Why not top-two Thompson or LUCB: both identify the best
arm but have no notion of cost per measurement and no stopping rule priced in the user's
units; KG(*)/cost gives both (stop when the best ratio is below the price of regret).

Contention. P(best in task) per candidate by Monte Carlo on the normal beliefs, Rao-Blackwellised:
for each draw of the others, P(X_i > max_{j != i} X_j) = Phi((mu_i - M_-i) / s_i), averaged over
draws (far less noisy than counting argmaxes, so the 1% threshold is stable), with a generator
seeded by (seed, round) so the engine stays deterministic.

Price of regret. gamma_decision = tolerance / (the median task's cost of training all of its
candidates in full): one tolerance of regret in a task's pick is worth brute-forcing the task,
the one way to remove that regret for certain. The tolerance is what the user says a wrong
prediction may cost them without mattering. An increment whose expected regret reduction per
device-second is below gamma_decision does not pay. (Tried on the development worlds: pricing
one tolerance at one full run stopped the engine after 7% of a 20% budget on the synthetic
worlds, leaving regret a cheaper rule removes.)

Everything is vectorised over candidates with tasks as integer codes; per-task max / second
max come from one lexsort (no Python loop over candidates).
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.special import ndtr

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def f_kg(z: np.ndarray) -> np.ndarray:
    """f(z) = z Phi(z) + phi(z) = E[max(Z + z, 0)] for standard normal Z: the knowledge-gradient kernel."""
    z = np.asarray(z, float)
    return z * ndtr(z) + _INV_SQRT_2PI * np.exp(-0.5 * z * z)


def knowledge_gradient(sigma_tilde: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """KG = s~ f(-|gap| / s~): expected improvement of the max of the means from one measurement.

    sigma_tilde: std of the change of the measured mean (sqrt of the variance the measurement
    removes); gap: mu_i - max_{j != i} mu_j. Zero where s~ is 0 or not finite; for a candidate
    alone in its task (gap = -inf) too, since no measurement changes its task's choice.
    """
    s = np.asarray(sigma_tilde, float)
    g = np.abs(np.asarray(gap, float))
    ok = np.isfinite(s) & (s > 0) & np.isfinite(g)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.where(ok, -g / np.where(ok, s, 1.0), 0.0)
        # f(z) underflows to 0 far in the tail, which is the right answer (no value).
        out = np.where(ok, s * f_kg(z), 0.0)
    return np.maximum(out, 0.0)


def group_codes(groups: list[str] | np.ndarray) -> np.ndarray:
    """Integer code per task (sorted names), for the vectorised per-task reductions."""
    _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64)


def best_other(mu: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """max_{j != i, same task} mu_j per candidate (-inf when none); NaN means are ignored."""
    mu = np.asarray(mu, float)
    n = mu.size
    out = np.full(n, -np.inf)
    if n == 0:
        return out
    key = np.where(np.isfinite(mu), mu, -np.inf)
    order = np.lexsort((-key, codes))  # by task, best first
    ks, cs = key[order], np.asarray(codes)[order]
    pos = np.arange(n)
    first = np.maximum.accumulate(np.where(np.r_[True, cs[1:] != cs[:-1]], pos, 0))
    nxt = np.minimum(first + 1, n - 1)
    second = np.where((first + 1 < n) & (cs[nxt] == cs), ks[nxt], -np.inf)
    out[order] = np.where(pos == first, second, ks[first])
    return out


_P_BEST_CHUNK = 1 << 18  # draws x candidates reduced in one pass (2 MB of float64 per array)


def p_best_by_task(
    mu: np.ndarray,
    sd: np.ndarray,
    tasks: list[str],
    seed: int,
    draws: int,
    cache: dict[str, tuple[tuple, np.ndarray]],
) -> np.ndarray:
    """P(candidate has its task's largest expected final) under independent normal beliefs.

    Rao-Blackwellised Monte Carlo: `draws` draws of every candidate, then per candidate the
    exact probability of beating the best of the others in that draw, averaged; normalised per
    task so a task's probabilities sum to 1. NaN for candidates without a finite belief (they
    take no part). A candidate alone in its task gets 1.

    Each task's draws are seeded by (seed, the task's name), so a task's probabilities are a
    function of its own beliefs: a task whose means and sds did not change gets exactly what it
    got before. `cache` (task -> (its inputs, its probabilities)) keeps them between calls; the
    tasks that changed are drawn and reduced together in one vectorised pass.
    """
    mu = np.asarray(mu, float)
    sd = np.asarray(sd, float)
    out = np.full(mu.size, np.nan)
    ok = np.isfinite(mu) & np.isfinite(sd) & (sd >= 0)
    by_task: dict[str, list[int]] = {}
    for i in np.flatnonzero(ok).tolist():
        by_task.setdefault(tasks[i], []).append(i)
    redo: list[tuple[str, np.ndarray, tuple]] = []
    for name, members in by_task.items():
        idx = np.asarray(members)
        key = (draws, mu[idx].tobytes(), sd[idx].tobytes())
        hit = cache.get(name)
        if hit is not None and hit[0] == key:
            out[idx] = hit[1]
        else:
            redo.append((name, idx, key))
    # Tasks are drawn and reduced a few at a time: each task's result depends on its own draws
    # only, and arrays of a few MB stay in cache (one pass over 10,000 candidates' draws at once
    # was three times slower).
    chunks: list[list[tuple[str, np.ndarray, tuple]]] = []
    size = _P_BEST_CHUNK  # the first task starts a chunk
    for job in redo:
        if size >= _P_BEST_CHUNK:
            chunks.append([])
            size = 0
        chunks[-1].append(job)
        size += job[1].size * draws
    for chunk in chunks:
        idx_all = np.concatenate([idx for _, idx, _ in chunk])
        c = np.repeat(np.arange(len(chunk)), [idx.size for _, idx, _ in chunk])
        Z = np.hstack(
            [
                np.random.default_rng(
                    np.random.SeedSequence([seed, zlib.crc32(name.encode()), 0x6B67])
                ).standard_normal((draws, idx.size))
                for name, idx, _ in chunk
            ]
        )
        p = _p_best_sorted(mu[idx_all], sd[idx_all], c, Z)
        out[idx_all] = p
        at = 0
        for name, idx, key in chunk:
            cache[name] = (key, p[at : at + idx.size].copy())
            at += idx.size
    return out


def _p_best_sorted(m: np.ndarray, s: np.ndarray, c: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """p_best's reduction for beliefs sorted by task code `c`, with standard normal draws Z
    (draws, n): per candidate, the Rao-Blackwellised probability, normalised per task."""
    draws = Z.shape[0]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, c.size])
    seg = np.repeat(np.arange(starts.size), sizes)
    X = m[None, :] + s[None, :] * Z
    M1 = np.maximum.reduceat(X, starts, axis=1)  # (draws, tasks)
    # second max per task: mask each task's argmax and reduce again
    arg = _segment_argmax(X, M1, starts, seg)
    rows = np.arange(draws)[:, None]
    X[rows, arg] = -np.inf  # X is not needed past this point
    M2 = np.maximum.reduceat(X, starts, axis=1)
    # the best of the others: the task's maximum, or the second one where it is this candidate
    M_other = np.take(M1, seg, axis=1)  # C order (M1[:, seg] is F order: mean(axis=0) would round differently)
    M_other[rows, arg] = M2
    with np.errstate(divide="ignore", invalid="ignore"):
        zz = (m[None, :] - M_other) / s[None, :]
    if (s <= 0).any():  # zero-variance beliefs: the step function itself
        zz = np.where(
            s[None, :] > 0, zz, np.where(m[None, :] > M_other, np.inf, np.where(m[None, :] < M_other, -np.inf, 0.0))
        )
    p = ndtr(zz).mean(axis=0)
    p = np.where(sizes[seg] == 1, 1.0, p)  # alone in its task
    tot = np.bincount(seg, weights=p, minlength=starts.size)
    return p / np.where(tot[seg] > 0, tot[seg], 1.0)


def _segment_argmax(X: np.ndarray, M: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Column index of each row's maximum M within each segment: (draws, segments)."""
    hit = X == M[:, seg]
    # first hit per segment: the smallest column index where hit, via a masked minimum
    cols = np.where(hit, np.arange(X.shape[1])[None, :], X.shape[1])
    return np.minimum.reduceat(cols, starts, axis=1)


def kg_star(
    gap: np.ndarray,
    var_now: np.ndarray,
    var_after: np.ndarray,
    cost: np.ndarray,
    feasible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KG(*): the best value per unit cost over increments k = 1..m.

    gap: (n,) mu_i - best other mean; var_now: (n,) belief variance at the current depth;
    var_after: (n, m) belief variance after the k-th candidate increment; cost: (n, m) its cost;
    feasible: (n, m) which increments may be bought (inside the budget and the probe cap).
    Returns (value per cost, the expected regret reduction of that increment, k) per candidate;
    value 0 and k = -1 where nothing is feasible or nothing can be learned.
    """
    gap = np.asarray(gap, float)
    v_now = np.asarray(var_now, float)
    va = np.asarray(var_after, float)
    cost = np.asarray(cost, float)
    removed = np.clip(v_now[:, None] - va, 0.0, None)
    kg = knowledge_gradient(np.sqrt(removed), np.broadcast_to(gap[:, None], va.shape))
    ok = np.isfinite(kg) & (cost > 0)
    if feasible is not None:
        ok &= feasible
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, kg / np.where(cost > 0, cost, 1.0), -np.inf)
    if ratio.shape[1] == 0:
        n = gap.size
        return np.zeros(n), np.zeros(n), np.full(n, -1)
    k = np.argmax(ratio, axis=1)
    best = ratio[np.arange(k.size), k]
    none = ~np.isfinite(best)
    return np.where(none, 0.0, best), np.where(none, 0.0, kg[np.arange(k.size), k]), np.where(none, -1, k)


def curve_distance(
    origin: np.ndarray | float, target: np.ndarray | float, exponent: np.ndarray | float = 0.0
) -> np.ndarray:
    """How much a saturating power law y = a + b s^-e still changes between steps `origin` and
    `target`, per unit of b e: the integral of s^(-e-1) over [origin, target], which is
    (origin^-e - target^-e) / e, and log(target / origin) as e -> 0.

    An extrapolation error is a share of the change the curve still makes, so the error a
    back-test measures over one window, divided by that window's curve_distance, carries to any
    other window of the same curve by multiplying with its curve_distance. e = 0 is the
    conservative limit (gains per doubling that never shrink); with e > 0 the error shrinks as
    the probe deepens and the curve flattens.
    """
    o = np.maximum(np.asarray(origin, float), 1e-9)
    t = np.maximum(np.asarray(target, float), o)
    e = np.asarray(exponent, float)
    e = np.where(np.isfinite(e), np.maximum(e, 0.0), 0.0)
    pos = e > 1e-9
    es = np.where(pos, e, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # o^-e (1 - (o/t)^e) / e, written to stay finite for large steps and exponents
        power = np.exp(-es * np.log(o)) * -np.expm1(-es * np.log(t / o)) / es
    return np.where(pos, power, np.log(t / o))


def backtest_error(steps: np.ndarray, values: np.ndarray, extrapolate, min_points: int = 3) -> tuple[float, float]:
    """Rolling-origin back-test of one curve: (extrapolated - observed, origin step).

    The prefix up to half the curve's depth (the last evaluation at or before it is the origin)
    is extrapolated to the depth reached (its last step) and compared with the value observed
    there. Callers pool the errors per unit of curve_distance(origin, depth, exponent), and
    `extrapolation_variance` carries them to the horizon. NaN when the half prefix has fewer
    than `min_points` evaluations.
    """
    steps = np.asarray(steps, float)
    values = np.asarray(values, float)
    if steps.size == 0:
        return float("nan"), float("nan")
    d = float(steps[-1])
    keep = steps <= d / 2
    if int(keep.sum()) < min_points:
        return float("nan"), float("nan")
    origin = float(steps[keep][-1])
    pred = float(extrapolate(steps[keep], values[keep], d))
    if not (np.isfinite(pred) and 0 < origin < d):
        return float("nan"), float("nan")
    return pred - float(values[-1]), origin


def extrapolation_variance(
    scale: np.ndarray | float,
    horizon: np.ndarray | float,
    depth: np.ndarray | float,
    exponent: np.ndarray | float = 0.0,
) -> np.ndarray:
    """(scale x curve_distance(depth, horizon, exponent))^2: the curve model's error when
    extrapolating from `depth`, zero at the horizon.

    `scale` is an error per unit of curve_distance, as the back-test measures it. With exponent 0
    the error grows with the log of the remaining ratio (an error per doubling that does not
    shrink as the curve flattens: conservative); with the task's curve exponent it grows with
    the change the curve model still expects.
    """
    return (
        np.asarray(scale, float) * curve_distance(depth, np.maximum(np.asarray(horizon, float), 1e-9), exponent)
    ) ** 2
