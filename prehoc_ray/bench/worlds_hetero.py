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


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _gap_moments(p_contender: float) -> tuple[float, float]:
    """Mean and variance (tau units) of the past runs' gap mixture."""
    lo_c, hi_c = 0.0, CONTENDER_GAP[1]
    lo_b, hi_b = BEATEN_GAP
    m1 = p_contender * (lo_c + hi_c) / 2 + (1 - p_contender) * (lo_b + hi_b) / 2
    m2 = p_contender * (hi_c**3 - lo_c**3) / (3 * (hi_c - lo_c)) + (1 - p_contender) * (hi_b**3 - lo_b**3) / (3 * (hi_b - lo_b))
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
) -> World:
    """A world whose candidates differ in noise, cost and revelation time (module docstring)."""
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
        g[1:n_cont[k]] = rng.uniform(*CONTENDER_GAP, n_cont[k] - 1)
        perm = rng.permutation(C)
        gap[lo:lo + C] = g[perm]
        contender[lo:lo + C] = perm < n_cont[k]
        hc = rng.random(P) < p_c
        gap[lo + C:lo + per] = np.where(hc, rng.uniform(0.0, CONTENDER_GAP[1], P), rng.uniform(*BEATEN_GAP, P))
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
    incr = np.sqrt(np.diff(var[:, ::-1], axis=1, prepend=0.0)) * rng.standard_normal((n_runs, steps.size))
    e = np.cumsum(incr, axis=1)[:, ::-1]
    u = run_unit
    fast = A[u, None] * np.exp(-steps[None, :] / r_fast[u, None])
    tail = np.exp(-(H - onset[u]) / rise[u])
    late = np.exp(-np.maximum(steps[None, :] - onset[u, None], 0.0) / rise[u, None])
    bloom = depth[u, None] * (late - tail[:, None]) / (1.0 - tail[:, None])
    Y = R[:, None] - fast - bloom + e
    full_final = m[cand_units] + np.sqrt(L_int[cand_units]) * rng.standard_normal(cand_units.size)

    # ----- assemble ---------------------------------------------------------------------------
    group = np.array([f"t{k}-{'static' if explained[k] else 'dynamic'}" for k in range(n_tasks)], dtype=object)
    local = np.tile(np.arange(per), n_tasks)
    statics = [dict(zip(STATIC_NAMES, map(float, row))) for row in feats]
    cands: list[Candidate] = []
    for j, i in enumerate(cand_units):
        rows = range(j * n_seeds, (j + 1) * n_seeds)
        curves = tuple((steps.copy(), Y[r].copy()) for r in rows)
        cands.append(Candidate(f"{group[task[i]]}/c{local[i]:02d}", str(group[task[i]]), int(horizon), float(cost[i]),
                               statics[i], curves, float(full_final[j])))
    hist: list[Candidate] = []
    base = cand_units.size * n_seeds
    for j, i in enumerate(hist_units):
        r = base + j
        hist.append(Candidate(f"{group[task[i]]}/h{local[i] - C:02d}", str(group[task[i]]), int(horizon), float(cost[i]),
                              statics[i], ((steps.copy(), Y[r].copy()),), float(R[r])))

    order = rng.permutation(len(cands))
    cands = [cands[o] for o in order]
    cu = cand_units[order]
    L0 = L_int[cu] + Vr[task[cu]]
    regime = np.where(L_int[cu] > tau2, Regime.NOISE_DOMINANT.value,
                      np.where(L0 <= tau2, Regime.STATIC_SUFFICIENT.value, Regime.DYNAMIC_CRITICAL.value)).astype(object)
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
    return World(f"hetero-s{seed}", cands, int(eval_every), tau, probe_seeds=probe_seeds, history=hist, truth=truth)
