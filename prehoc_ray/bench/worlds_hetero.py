"""A heterogeneous benchmark world: one where a good probe allocation pays off.

In `worlds.synthetic_world` every candidate of a family has the same noise, and every candidate
costs about the same, so spending the probe budget evenly is close to the best anyone can do.
`heterogeneous_world` makes the allocation matter. Candidates differ in how noisy they are, in
what a step costs, and in how late their curve shows its quality. Each task holds a few close
contenders among many candidates that are clearly beaten.

Generative story (the same as sim.synthetic, see its module docstring, with per-candidate
parameters). tau = tolerance; variances are given in units of tau^2.

- Tasks. n_tasks tasks. Half of them (rounded up, picked at random) are *static-explained*,
  and the others are *dynamic*. A task has a best expected final top_k ~ U(0.70, 0.90) and a
  chance level c0_k ~ U(0.15, 0.30), where its curves start.
- Expected finals. Unit i of task k (a candidate or a past run) has m_i = top_k - gap_i tau.
  For candidates, 2-3 are *contenders*: one has gap 0 and the others gap ~ U(0.1, 0.9). The
  rest are beaten, with gap ~ U(3, 15). A past run is contender-like (gap ~ U(0, 0.9)) with
  probability 2.5 / candidates_per_task and beaten otherwise, so the task's history looks
  like its candidates.
- Static features. m_i = s(x_i) + r_i. s is linear in the features x_i: log_params (set by the
  model tier; bigger models do better), log_lr, warmup_frac and data_similarity, with weights
  drawn per task. r_i ~ N(0, V_r) is the task's static residual, independent of s. For
  static-explained tasks V_r = (0.5 tau)^2 and s carries the rest of the spread of m. For
  dynamic tasks V_r = 0.9 Var(m), so the features say little. To keep the contender structure
  exact, m is drawn first and s | m comes from the Gaussian posterior of that forward model.
  The continuous features are then drawn at random and projected so that s(x_i) equals that
  value exactly. Past runs get their features from the same recipe, so the features tell as
  much about them as about the candidates.
- Costs. Each unit has a model tier: (125m, 350m, 1.3b, 2.7b, 6.7b) parameters at (0.0025,
  0.005, 0.012, 0.025, 0.05) device-seconds per step, each times U(0.9, 1.1). That spans
  about 20x. Tiers are dealt round-robin and then shuffled inside each task, so every task
  has the cheapest and the dearest tier.
- Noise. Each unit has its own floor L_int_i (log-uniform over 0.1..4 tau^2). Its optimization
  noise is K_i = k_i tau^2 eval_every^alpha_i, with k_i log-uniform over 0.5..16 (the variance
  at the first evaluation in tau^2) and alpha_i ~ U(0.4, 1.1).
- Runs. A run (a probe seed, the independent full fine-tune, or a past run) realises
  R = m_i + delta, with delta ~ N(0, L_int_i). It observes, at every eval_every steps up to the
  horizon,

      y(s) = R - A_i exp(-s / r_i) - B_i(s) + e(s),   Var e(s) = K_i s^-alpha_i,

  Here e is a reverse random walk (independent increments added from the horizon back), so a
  prefix's last value predicts R with error variance K_i c^-alpha_i. A_i exp(-s/r_i) is a fast
  early rise from near chance (r_i ~ U(0.005, 0.02) horizon), which is negligible by 10% of the
  horizon. B_i is the late-bloomer transient. About 25% of the units are late bloomers. A
  bloomer sits on a plateau D_i ~ U(4, 10) tau below R until its onset (U(0.05, 0.40)
  horizon). After the onset it rises exponentially, with time constant U(0.03, 0.08) horizon,
  and is normalised to reach exactly 0 at the horizon. A short probe under-rates a bloomer.
- Records. A candidate's `curves` are n_seeds independent probe seeds. Its `true_final` is
  the R of a further independent full run, not one of the probe seeds. A past run (`history`)
  is one completed run: its curve to the horizon, and its R as `true_final`. Its last
  evaluation, like any run's, still carries e(horizon) of variance K_i horizon^-alpha_i.

`World.truth` has one entry per candidate, in world order. Besides the keys that
sim.synthetic gives (candidate, group, regime, L_int, K, alpha, L0, expected_final,
true_final, horizon), it also holds:

- the noise and cost parameters: K_first (K_i eval_every^-alpha_i, the optimization variance
  at the first evaluation, in metric units) and cost_per_step;
- the late-bloomer transient: late_bloomer, onset (0 for non-bloomers), bloom_depth;
- the static part: contender, static_explained, static_pred (s(x_i)) and static_resid_var
  (V_r of the candidate's task);
- tier and task.

The regime label uses core.regimes' rule with L0 = L_int + V_r and no probe information:
Noise-Dominant if L_int > tau^2, Static-Sufficient if L0 <= tau^2, Dynamic-Critical otherwise.

Misspecified variant (misspecified=True, world "hetero-miss-s{seed}"). The curves above follow
exactly the model the engine fits: seed noise L_int + K c^-alpha from a Gaussian reverse random
walk. The variant keeps everything else (tasks, contenders, costs, features, late bloomers,
history, R of every run and every true_final, the truth keys; all drawn from the same stream,
so hetero-miss-s{seed} is hetero-s{seed} with other curves) and changes how a run's curve
departs from its R. Its parameters come from a second stream seeded by (seed, a constant).

- Shared schedule bias. Every run of unit i adds b_i g_i(s), the same for all its probe seeds:
  |b_i| ~ U(0.5, 3) tau, negative for 75% of the units (the early curve under-rates the
  final, as the learning-rate decay still lifts it), positive otherwise. g_i(0) = 1 (about 1
  for logistic) and g_i(horizon) = 0, with one of four shapes at random: cosine annealing
  (1 + cos(pi s / H)) / 2, linear decay 1 - s / H, a plateau that ends logistically (midpoint
  U(0.3, 0.7) H, scale U(0.04, 0.10) H), or an exponential (time constant U(0.2, 0.6) H)
  normalised to 0 at the horizon. Averaging seeds does not remove it. A full run's end, and so
  true_final, carries none of it.
- Heavy-tailed noise. The random walk's increments are Student-t with 3 degrees of freedom,
  clipped at 6 sd, and scaled to the variance the Gaussian ones had.
- Variance that is not a power law. For a third of the units the walk's variance decays
  exponentially, V_H + (V_e - V_H) exp(-(s - e) / T_i), with V_e and V_H the power law's
  K_i s^-alpha_i at the first evaluation e and at the horizon H, and T_i such that it meets the
  power law at sqrt(e H) (above it before, below it after, back to it at the horizon).
  Half of the units also have an instability at the warmup end: independent (no memory across
  evaluations) t(3) noise whose variance is a Gaussian bump in the step, U(0.5, 2) times the
  walk's variance at its centre U(0.03, 0.15) H, with width U(0.01, 0.03) H.
- Saturation. An observed value above 0.95 (below 0.10) is squashed smoothly into (0.95, 1.0)
  ((0.05, 0.10)), so that an accuracy stays one (about 1 value in 7000 is touched).

Extra truth keys: bias (b_i), bias_shape, bias_10pct (b_i g_i at 10% of the horizon), noise_T
(T_i, NaN for a power law), bump_var, bump_step and bump_width (0, NaN, NaN without a bump).
`noise_variance(world)` gives each candidate's walk and bump variance at every evaluation.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.worlds import Candidate, World
from prehoc_ray.types import Regime

# Model tiers: (name, parameters, device-seconds per step); cost spans 20x, parameters ~54x.
TIERS: tuple[tuple[str, float, float], ...] = (
    ("125m", 1.25e8, 0.0025),
    ("350m", 3.5e8, 0.005),
    ("1.3b", 1.3e9, 0.012),
    ("2.7b", 2.7e9, 0.025),
    ("6.7b", 6.7e9, 0.05),
)
STATIC_NAMES = ("log_params", "log_lr", "warmup_frac", "data_similarity")

L_INT_RANGE = (0.1, 4.0)  # tau^2, log-uniform
K_FIRST_RANGE = (0.5, 16.0)  # tau^2 at the first evaluation, log-uniform
ALPHA_RANGE = (0.4, 1.1)
BLOOM_FRACTION = 0.25
ONSET_RANGE = (0.05, 0.40)  # fraction of the horizon
RISE_RANGE = (0.03, 0.08)  # fraction of the horizon
BLOOM_DEPTH_RANGE = (4.0, 10.0)  # tau
FAST_RISE_RANGE = (0.005, 0.02)  # fraction of the horizon
CONTENDER_GAP = (0.1, 0.9)  # tau, behind the task's best (which has gap 0)
BEATEN_GAP = (3.0, 15.0)  # tau
STATIC_RESID_SD = 0.5  # tau: static-explained tasks
DYNAMIC_RESID_FRAC = 0.9  # share of Var(m) the features leave unexplained in dynamic tasks

# The misspecified variant (module docstring, "Misspecified variant").
MISS_BIAS_RANGE = (0.5, 3.0)  # tau: size of the shared schedule bias
MISS_BIAS_NEGATIVE = 0.75  # share of units whose early curve under-rates their final
MISS_BIAS_SHAPES = ("cosine", "linear", "logistic", "exp")
MISS_LOGISTIC_MID = (0.3, 0.7)  # fraction of the horizon
MISS_LOGISTIC_WIDTH = (0.04, 0.10)  # fraction of the horizon
MISS_EXP_BIAS_T = (0.2, 0.6)  # fraction of the horizon
MISS_T_DF = 3  # Student-t degrees of freedom of the optimization-noise increments
MISS_T_CLIP = 6.0  # |draw| in standard deviations (the unit-variance t's): no 20-sd single evaluations
MISS_EXP_DECAY = 1 / 3  # share of units whose optimization variance decays exponentially
MISS_BUMP = 0.5  # share of units with a variance bump at the warmup end
MISS_BUMP_AT = (0.03, 0.15)  # fraction of the horizon
MISS_BUMP_WIDTH = (0.01, 0.03)  # fraction of the horizon (Gaussian sd)
MISS_BUMP_SIZE = (0.5, 2.0)  # times the random-walk variance at the bump
MISS_SATURATE = (0.10, 0.95, 0.05)  # observed values beyond (lo, hi) are squashed into (lo - room, hi + room)


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _gap_moments(p_contender: float) -> tuple[float, float]:
    """Mean and variance (tau units) of the past runs' gap mixture."""
    lo_c, hi_c = 0.0, CONTENDER_GAP[1]
    lo_b, hi_b = BEATEN_GAP
    m1 = p_contender * (lo_c + hi_c) / 2 + (1 - p_contender) * (lo_b + hi_b) / 2
    m2 = p_contender * (hi_c**3 - lo_c**3) / (3 * (hi_c - lo_c)) + (1 - p_contender) * (hi_b**3 - lo_b**3) / (
        3 * (hi_b - lo_b)
    )
    return m1, m2 - m1**2


def heterogeneous_world(
    seed: int,
    n_tasks: int = 6,
    candidates_per_task: int = 12,
    n_seeds: int = 3,
    horizon: int = 2000,
    eval_every: int = 20,
    tolerance: float = 0.02,
    n_history: int = 16,
    probe_seeds: int = 2,
    misspecified: bool = False,
) -> World:
    """A world whose candidates differ in noise, cost and revelation time (module docstring).

    misspecified=True: the same tasks, contenders, costs, features, late bloomers, expected and
    true finals, but curves whose noise breaks the engine's model (module docstring,
    "Misspecified variant"); the world is named hetero-miss-s{seed}.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    if candidates_per_task < 3:
        raise ValueError(f"candidates_per_task must be >= 3 (2 contenders and a beaten one), got {candidates_per_task}")
    if n_seeds < 1 or n_history < 0:
        raise ValueError(f"n_seeds must be >= 1 and n_history >= 0, got {n_seeds}, {n_history}")
    if not (eval_every >= 1 and horizon >= eval_every):
        raise ValueError(f"need 1 <= eval_every <= horizon, got eval_every={eval_every}, horizon={horizon}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")

    rng = np.random.default_rng(seed)
    tau, tau2, H = float(tolerance), float(tolerance) ** 2, float(horizon)
    C, P = candidates_per_task, n_history
    per = C + P  # units per task: candidates first, then past runs
    N = n_tasks * per

    # ----- tasks ------------------------------------------------------------------------------
    explained = rng.permutation(np.arange(n_tasks) < (n_tasks + 1) // 2)
    top = rng.uniform(0.70, 0.90, n_tasks)
    chance = rng.uniform(0.15, 0.30, n_tasks)
    p_c = min(2.5 / C, 1.0)
    gap_mean, gap_var = _gap_moments(p_c)
    Vm = gap_var * tau2
    Vr = np.where(explained, STATIC_RESID_SD**2 * tau2, DYNAMIC_RESID_FRAC * Vm)
    Vs = Vm - Vr
    mu = top - gap_mean * tau

    task = np.repeat(np.arange(n_tasks), per)
    is_hist = np.tile(np.arange(per) >= C, n_tasks)

    # ----- expected finals --------------------------------------------------------------------
    n_cont = rng.integers(2, 4, n_tasks) if C >= 4 else np.full(n_tasks, 2)
    gap = np.empty(N)
    contender = np.zeros(N, bool)
    for k in range(n_tasks):
        lo = k * per
        g = rng.uniform(*BEATEN_GAP, C)
        g[0] = 0.0
        g[1 : n_cont[k]] = rng.uniform(*CONTENDER_GAP, n_cont[k] - 1)
        perm = rng.permutation(C)
        gap[lo : lo + C] = g[perm]
        contender[lo : lo + C] = perm < n_cont[k]
        hc = rng.random(P) < p_c
        gap[lo + C : lo + per] = np.where(hc, rng.uniform(0.0, CONTENDER_GAP[1], P), rng.uniform(*BEATEN_GAP, P))
    m = top[task] - gap * tau

    # ----- model tiers and costs --------------------------------------------------------------
    n_t = len(TIERS)
    tier = np.concatenate([rng.permutation(np.resize(np.arange(n_t), per)) for _ in range(n_tasks)])
    tier_params = np.array([t[1] for t in TIERS])
    tier_cost = np.array([t[2] for t in TIERS])
    log_params = np.log10(tier_params)[tier]
    cost = tier_cost[tier] * rng.uniform(0.9, 1.1, N)

    # ----- static features: s | m from the forward model m = s + r ----------------------------
    a = Vs / (Vs + Vr)
    s_mean = mu[task] + a[task] * (m - mu[task])
    s_sd = np.sqrt(Vs * Vr / (Vs + Vr))[task]
    s = s_mean + s_sd * rng.standard_normal(N)
    lp_ref = float(np.mean(np.log10(tier_params)))
    lp_sd = float(np.std(np.log10(tier_params)))
    b = np.sqrt(Vs) * rng.uniform(0.3, 0.6, n_tasks) / lp_sd  # metric per decade of parameters
    wc = rng.standard_normal((n_tasks, 3))
    wc *= (np.sqrt(np.maximum(Vs - (b * lp_sd) ** 2, 1e-12 * tau2)) / np.linalg.norm(wc, axis=1))[:, None]
    t = s - mu[task] - b[task] * (log_params - lp_ref)  # what the continuous features must carry
    gz = rng.standard_normal((N, 3))
    w = wc[task]
    z = gz + w * ((t - np.einsum("ij,ij->i", w, gz)) / np.einsum("ij,ij->i", w, w))[:, None]
    feat_off = np.array([-4.0, 0.10, 0.50])
    feat_scale = np.array([0.30, 0.02, 0.12])
    feats = np.column_stack([log_params, feat_off + feat_scale * z])

    # ----- per-unit noise and transients ------------------------------------------------------
    L_int = _loguniform(rng, *L_INT_RANGE, N) * tau2
    k_first = _loguniform(rng, *K_FIRST_RANGE, N)
    alpha = rng.uniform(*ALPHA_RANGE, N)
    K = k_first * tau2 * float(eval_every) ** alpha
    bloomer = np.zeros(N, bool)
    bloomer[rng.permutation(N)[: int(round(BLOOM_FRACTION * N))]] = True
    onset = np.where(bloomer, rng.uniform(*ONSET_RANGE, N) * H, 0.0)
    rise = rng.uniform(*RISE_RANGE, N) * H
    depth = np.where(bloomer, np.minimum(rng.uniform(*BLOOM_DEPTH_RANGE, N) * tau, m - chance[task] - 0.02), 0.0)
    depth = np.maximum(depth, 0.0)
    A = np.maximum(m - depth - chance[task], 0.0) * rng.uniform(0.6, 1.0, N)
    r_fast = rng.uniform(*FAST_RISE_RANGE, N) * H

    # ----- runs -------------------------------------------------------------------------------
    steps = np.arange(eval_every, horizon + 1e-9, eval_every, dtype=float)
    cand_units = np.flatnonzero(~is_hist)
    hist_units = np.flatnonzero(is_hist)
    run_unit = np.concatenate([np.repeat(cand_units, n_seeds), hist_units])
    n_runs = run_unit.size
    R = m[run_unit] + np.sqrt(L_int[run_unit]) * rng.standard_normal(n_runs)
    var = K[run_unit, None] * steps[None, :] ** (-alpha[run_unit, None])
    z = rng.standard_normal((n_runs, steps.size))  # drawn in both variants: the later draws stay the same
    u = run_unit
    if misspecified:  # its own stream, after every draw of the well-specified world
        miss = _misspecification(np.random.default_rng([seed, _MISS_STREAM]), N, K, alpha, tau, float(eval_every), H)
        var = _rw_variance(steps, K[u], alpha[u], miss["noise_T"][u], float(eval_every), H)
        z = miss["t"](n_runs, steps.size)
    incr = np.sqrt(np.diff(var[:, ::-1], axis=1, prepend=0.0)) * z
    e = np.cumsum(incr, axis=1)[:, ::-1]
    fast = A[u, None] * np.exp(-steps[None, :] / r_fast[u, None])
    tail = np.exp(-(H - onset[u]) / rise[u])
    late = np.exp(-np.maximum(steps[None, :] - onset[u, None], 0.0) / rise[u, None])
    bloom = depth[u, None] * (late - tail[:, None]) / (1.0 - tail[:, None])
    Y = R[:, None] - fast - bloom + e
    if misspecified:
        bump_var = _bump_variance(steps, miss["bump_var"][u], miss["bump_step"][u], miss["bump_width"][u])
        Y = Y + np.sqrt(bump_var) * miss["t"](n_runs, steps.size)
        Y = Y + miss["bias"][u, None] * _bias_shape(
            steps, miss["bias_shape"][u], miss["bias_time"][u], miss["bias_width"][u], H
        )
        Y = _saturate(Y, *MISS_SATURATE)
    full_final = m[cand_units] + np.sqrt(L_int[cand_units]) * rng.standard_normal(cand_units.size)

    # ----- assemble ---------------------------------------------------------------------------
    group = np.array([f"t{k}-{'static' if explained[k] else 'dynamic'}" for k in range(n_tasks)], dtype=object)
    local = np.tile(np.arange(per), n_tasks)
    statics = [dict(zip(STATIC_NAMES, map(float, row))) for row in feats]
    cands: list[Candidate] = []
    for j, i in enumerate(cand_units):
        rows = range(j * n_seeds, (j + 1) * n_seeds)
        curves = tuple((steps.copy(), Y[r].copy()) for r in rows)
        cands.append(
            Candidate(
                f"{group[task[i]]}/c{local[i]:02d}",
                str(group[task[i]]),
                int(horizon),
                float(cost[i]),
                statics[i],
                curves,
                float(full_final[j]),
            )
        )
    hist: list[Candidate] = []
    base = cand_units.size * n_seeds
    for j, i in enumerate(hist_units):
        r = base + j
        hist.append(
            Candidate(
                f"{group[task[i]]}/h{local[i] - C:02d}",
                str(group[task[i]]),
                int(horizon),
                float(cost[i]),
                statics[i],
                ((steps.copy(), Y[r].copy()),),
                float(R[r]),
            )
        )

    order = rng.permutation(len(cands))
    cands = [cands[o] for o in order]
    cu = cand_units[order]
    L0 = L_int[cu] + Vr[task[cu]]
    regime = np.where(
        L_int[cu] > tau2,
        Regime.NOISE_DOMINANT.value,
        np.where(L0 <= tau2, Regime.STATIC_SUFFICIENT.value, Regime.DYNAMIC_CRITICAL.value),
    ).astype(object)
    truth: dict[str, np.ndarray] = {
        "candidate": np.array([c.id for c in cands], dtype=object),
        "group": np.array([c.group for c in cands], dtype=object),
        "task": task[cu].astype(int),
        "regime": regime,
        "expected_final": m[cu],
        "true_final": full_final[order],
        "L_int": L_int[cu],
        "K": K[cu],
        "K_first": k_first[cu] * tau2,
        "alpha": alpha[cu],
        "L0": L0,
        "late_bloomer": bloomer[cu],
        "onset": onset[cu],
        "bloom_depth": depth[cu],
        "cost_per_step": cost[cu],
        "tier": tier[cu].astype(int),
        "contender": contender[cu],
        "static_explained": explained[task[cu]],
        "static_pred": s[cu],
        "static_resid_var": Vr[task[cu]],
        "horizon": np.full(cu.size, float(horizon)),
    }
    if misspecified:
        truth.update(
            {
                "bias": miss["bias"][cu],
                "bias_shape": np.array([MISS_BIAS_SHAPES[j] for j in miss["bias_shape"][cu]], dtype=object),
                "bias_10pct": miss["bias"][cu]
                * _bias_shape(
                    np.array([0.1 * H]), miss["bias_shape"][cu], miss["bias_time"][cu], miss["bias_width"][cu], H
                )[:, 0],
                "noise_T": miss["noise_T"][cu],
                "bump_var": miss["bump_var"][cu],
                "bump_step": miss["bump_step"][cu],
                "bump_width": miss["bump_width"][cu],
            }
        )
        return World(
            f"hetero-miss-s{seed}", cands, int(eval_every), tau, probe_seeds=probe_seeds, history=hist, truth=truth
        )
    return World(f"hetero-s{seed}", cands, int(eval_every), tau, probe_seeds=probe_seeds, history=hist, truth=truth)


# ----- the misspecified variant ------------------------------------------------------------------
_MISS_STREAM = 0x6D155  # second word of the misspecification stream's seed


def noise_variance(world: World) -> tuple[np.ndarray, np.ndarray]:
    """(random walk, warmup bump) variance of each candidate's optimization noise at each of its
    evaluation steps, from world.truth: (n_candidates, n_steps) arrays. For a well-specified
    world the bump is 0 and the random walk's variance is K s^-alpha."""
    tr, e = world.truth, float(world.eval_every)
    H = float(tr["horizon"][0])
    steps = np.arange(e, H + 1e-9, e)
    n = len(world.candidates)
    T = tr.get("noise_T", np.full(n, np.nan))
    rw = _rw_variance(steps, tr["K"], tr["alpha"], T, e, H)
    if "bump_var" not in tr:
        return rw, np.zeros_like(rw)
    return rw, _bump_variance(steps, tr["bump_var"], tr["bump_step"], tr["bump_width"])


def _t_scale(df: int, clip: float) -> float:
    """1 / sd of a Student-t(df) draw scaled to unit variance and clipped to +-clip (df = 3 only)."""
    if df != 3:
        raise ValueError("closed form for 3 degrees of freedom only")
    # X = T / sqrt(3) has density 2 / (pi (1 + x^2)^2).
    inner = 2 / np.pi * (np.arctan(clip) - clip / (1 + clip**2))
    outer = 2 / np.pi * (np.pi / 2 - np.arctan(clip) - clip / (1 + clip**2))
    return float(1 / np.sqrt(inner + clip**2 * outer))


def _misspecification(
    rng: np.random.Generator, n: int, K: np.ndarray, alpha: np.ndarray, tau: float, e: float, H: float
) -> dict:
    """Per-unit parameters of the misspecified noise, and the unit-variance heavy-tailed draws."""
    sign = np.where(rng.random(n) < MISS_BIAS_NEGATIVE, -1.0, 1.0)
    bias = sign * rng.uniform(*MISS_BIAS_RANGE, n) * tau
    shape = rng.integers(0, len(MISS_BIAS_SHAPES), n)
    mid = rng.uniform(*MISS_LOGISTIC_MID, n) * H
    width = rng.uniform(*MISS_LOGISTIC_WIDTH, n) * H
    T_exp = rng.uniform(*MISS_EXP_BIAS_T, n) * H
    logistic = shape == MISS_BIAS_SHAPES.index("logistic")
    bias_time = np.where(logistic, mid, np.where(shape == MISS_BIAS_SHAPES.index("exp"), T_exp, np.nan))
    bias_width = np.where(logistic, width, np.nan)

    exp_decay = rng.random(n) < MISS_EXP_DECAY
    c = np.sqrt(e * H)  # the exponential decay meets the power law at e, sqrt(e H) and H
    if H > e:
        v_e, v_c, v_H = K * e**-alpha, K * c**-alpha, K * H**-alpha
        T_noise = (c - e) / np.log((v_e - v_H) / (v_c - v_H))
    else:
        T_noise = np.full(n, np.inf)
    noise_T = np.where(exp_decay, T_noise, np.nan)

    has_bump = rng.random(n) < MISS_BUMP
    bump_step = rng.uniform(*MISS_BUMP_AT, n) * H
    bump_width = rng.uniform(*MISS_BUMP_WIDTH, n) * H
    bump_size = rng.uniform(*MISS_BUMP_SIZE, n)
    at = np.maximum(bump_step, e)
    bump_var = np.where(
        has_bump, bump_size * _rw_variance(at[:, None], K, alpha, noise_T, e, H, per_row=True)[:, 0], 0.0
    )
    bump_step = np.where(has_bump, bump_step, np.nan)
    bump_width = np.where(has_bump, bump_width, np.nan)

    scale = _t_scale(MISS_T_DF, MISS_T_CLIP)

    def t(*size: int) -> np.ndarray:
        return (
            np.clip(rng.standard_t(MISS_T_DF, size) / np.sqrt(MISS_T_DF / (MISS_T_DF - 2)), -MISS_T_CLIP, MISS_T_CLIP)
            * scale
        )

    return {
        "bias": bias,
        "bias_shape": shape,
        "bias_time": bias_time,
        "bias_width": bias_width,
        "noise_T": noise_T,
        "bump_var": bump_var,
        "bump_step": bump_step,
        "bump_width": bump_width,
        "t": t,
    }


def _rw_variance(
    steps: np.ndarray, K: np.ndarray, alpha: np.ndarray, noise_T: np.ndarray, e: float, H: float, per_row: bool = False
) -> np.ndarray:
    """Variance of the reverse random walk at `steps`, one row per unit: K s^-alpha, or where
    noise_T is finite, V_H + (V_e - V_H) exp(-(s - e) / noise_T) (equal to the power law at the
    first evaluation and at sqrt(e H), and to within exp(-(H - e) / noise_T) at the horizon).
    per_row: steps holds one column per unit."""
    s = steps if per_row else steps[None, :]
    K, alpha, T = K[:, None], alpha[:, None], noise_T[:, None]
    power = K * s ** (-alpha)
    v_e, v_H = K * e ** (-alpha), K * H ** (-alpha)
    with np.errstate(invalid="ignore", over="ignore"):
        expo = v_H + (v_e - v_H) * np.exp(-(s - e) / np.where(np.isfinite(T), T, 1.0))
    return np.where(np.isfinite(T), expo, power)


def _bump_variance(steps: np.ndarray, size: np.ndarray, at: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Variance of the warmup-end instability: a Gaussian bump in the step, no memory across evaluations."""
    on = size > 0
    z = (steps[None, :] - np.where(on, at, 0.0)[:, None]) / np.where(on, width, 1.0)[:, None]
    return size[:, None] * np.exp(-0.5 * z**2)


def _saturate(y: np.ndarray, lo: float, hi: float, room: float) -> np.ndarray:
    """An accuracy stays an accuracy: values above hi (below lo) are squashed smoothly below hi + room
    (above lo - room); values in [lo, hi] are untouched."""
    y = np.where(y > hi, hi + room * np.tanh((y - hi) / room), y)
    return np.where(y < lo, lo - room * np.tanh((lo - y) / room), y)


def _bias_shape(steps: np.ndarray, shape: np.ndarray, time: np.ndarray, width: np.ndarray, H: float) -> np.ndarray:
    """g(s) per unit: 1 at s = 0 (for logistic, about 1), 0 at the horizon, shaped by the schedule."""
    s = steps[None, :]
    cosine = np.broadcast_to(0.5 * (1 + np.cos(np.pi * s / H)), (shape.size, steps.size))
    linear = np.broadcast_to(1 - s / H, (shape.size, steps.size))
    mid = np.where(np.isfinite(time), time, 0.5 * H)[:, None]
    w = np.where(np.isfinite(width), width, 0.1 * H)[:, None]
    sig = lambda x: 0.5 * (1 + np.tanh(0.5 * x))  # noqa: E731 - logistic, overflow-free
    logistic = (sig((mid - s) / w) - sig((mid - H) / w)) / (sig(mid / w) - sig((mid - H) / w))
    T = np.where(np.isfinite(time), time, H)[:, None]
    expo = (np.exp(-s / T) - np.exp(-H / T)) / (1 - np.exp(-H / T))
    return np.choose(shape[:, None], (cosine, linear, logistic, expo))
