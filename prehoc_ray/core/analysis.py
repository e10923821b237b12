"""Offline analysis: from observed trajectories to predictions and risk decompositions.

This is the whole of Algorithm 1 on existing curves: per candidate, a predicted final with a
calibrated interval at the chosen depth; per unit (a candidate with several seeds, or a group
with completed runs), U(c) at several depths, the joint decay fit, c*, L(0), J and the regime.
Pure numpy/scipy: the CLI reads and writes files around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from prehoc_ray.core.budget import choose_depth, default_gamma
from prehoc_ray.core.decay import DIAGNOSTIC_HELP, DecayFit, fit_decay
from prehoc_ray.core.family import fit_family
from prehoc_ray.core.observations import CandidateCurves, Observations
from prehoc_ray.core.population import MIN_POPULATION, HistoryPredictor, out_of_fold, population_risk
from prehoc_ray.core.prefix_prediction import PrefixPredictions, prefix_predictions
from prehoc_ray.core.regimes import RegimeThresholds, classify, explain
from prehoc_ray.types import Regime

N_DEPTHS = 8


@dataclass(frozen=True)
class AnalysisSettings:
    level: float = 0.9
    tolerance: float = 0.02
    cost_per_step: float = 1.0
    gamma: float | None = None  # None: default_gamma(tolerance, cost_per_step, horizon)
    horizon: float | None = None  # override every candidate's horizon
    mode: str = "max"
    n_folds: int = 5
    n_boot: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if self.cost_per_step <= 0:
            raise ValueError(f"cost_per_step must be > 0, got {self.cost_per_step}")
        if self.gamma is not None and self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if self.horizon is not None and self.horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {self.horizon}")


@dataclass
class Unit:
    """A fitted unit: its U(c) measurements, decay fit and decision quantities."""

    name: str
    kind: str  # "seeds" or "population"
    depths: np.ndarray
    U: np.ndarray
    fit: DecayFit
    L0: float = np.nan
    c_star: float = np.nan
    J0: float = np.nan
    J_star: float = np.nan
    regime: Regime = Regime.UNDETERMINED
    reason: str = ""
    family_L_int_lo: float = np.nan  # the pooled family fit's floor lower bound (evidence for Noise-Dominant)


@dataclass
class AnalysisResult:
    predictions: dict[str, np.ndarray]
    units: list[Unit]
    gamma: float
    settings: AnalysisSettings
    candidate_unit: dict[str, str] = field(default_factory=dict)
    # Seeds left out because they stopped before the others (CandidateCurves.ended_early):
    # candidate -> {seed: its last step}.
    ended_early: dict[str, dict[int, float]] = field(default_factory=dict)

    def decomposition_rows(self) -> dict[str, list]:
        cols: dict[str, list] = {
            k: []
            for k in (
                "unit",
                "kind",
                "L_int",
                "L_int_lo",
                "L_int_hi",
                "K",
                "K_lo",
                "K_hi",
                "alpha",
                "alpha_lo",
                "alpha_hi",
                "L0",
                "c_star",
                "J0",
                "J_star",
                "regime",
                "reason",
                "n_points",
                "diagnostics",
            )
        }
        for u in self.units:
            f = u.fit
            for k, v in (
                ("unit", u.name),
                ("kind", u.kind),
                ("L_int", f.L_int),
                ("L_int_lo", f.L_int_lo),
                ("L_int_hi", f.L_int_hi),
                ("K", f.K),
                ("K_lo", f.K_lo),
                ("K_hi", f.K_hi),
                ("alpha", f.alpha),
                ("alpha_lo", f.alpha_lo),
                ("alpha_hi", f.alpha_hi),
                ("L0", u.L0),
                ("c_star", u.c_star),
                ("J0", u.J0),
                ("J_star", u.J_star),
                ("regime", u.regime.value),
                ("reason", u.reason),
                ("n_points", f.n_points),
                ("diagnostics", ";".join(f.diagnostics)),
            ):
                cols[k].append(v)
        return cols


def _depth_grid(lo: float, hi: float, steps: np.ndarray) -> np.ndarray:
    """Up to N_DEPTHS observed steps in [lo, hi], spread evenly in log depth."""
    cand = np.unique(steps[(steps >= lo) & (steps <= hi)])
    if cand.size <= N_DEPTHS:
        return cand
    targets = np.geomspace(cand[0], cand[-1], N_DEPTHS)
    return np.unique(cand[np.abs(np.log(cand)[None, :] - np.log(targets)[:, None]).argmin(1)])


def analyze(
    obs: Observations,
    depth: float | dict[str, float] | None = None,
    settings: AnalysisSettings = AnalysisSettings(),
) -> AnalysisResult:
    """Predict every candidate's final at `depth` and decompose the risk of every unit.

    depth: None (everything observed), a number of steps, or a per-candidate mapping.
    """
    cands_full = obs.per_candidate(settings.horizon)
    if not cands_full:
        raise ValueError("no observations to analyze")
    depths = _analysis_depths(cands_full, depth)
    cands = [c.truncated(d) for c, d in zip(cands_full, depths)]
    ended = {c.candidate: e for c in cands if (e := c.ended_early())}
    cands = [c.without_seeds(ended[c.candidate]) if c.candidate in ended else c for c in cands]
    thresholds = RegimeThresholds(settings.tolerance)
    horizon_ref = float(np.median([c.horizon for c in cands]))
    gamma = settings.gamma or default_gamma(settings.tolerance, settings.cost_per_step, horizon_ref)
    # One seed sequence for every fit, spawned in a fixed order: population units, then families.
    rng_seq = np.random.SeedSequence(settings.seed)

    acc = _Accumulated(np.full(len(cands), np.nan), np.full(len(cands), np.nan), [], {})
    groups = sorted({c.group for c in cands})
    group_L0 = {g: _predict_group(g, cands_full, cands, depths, settings, rng_seq, acc) for g in groups}
    for g in groups:
        _add_seed_units(g, cands, depths, settings, rng_seq, group_L0[g], acc)
    _prefix_predictions(cands, acc, settings.level)

    _decide(acc.units, gamma, settings, thresholds, {c.candidate: c.horizon for c in cands})
    _observed_finals(cands, acc)
    preds = _prediction_table(cands, depths, acc, settings.level, metric_support(cands, settings.mode))
    return AnalysisResult(preds, acc.units, gamma, settings, acc.candidate_unit, ended)


def metric_support(cands: list[CandidateCurves], mode: str) -> tuple[float, float]:
    """The range a smaller-is-better final can take: not below 0 when nothing the analysis
    reads (the evaluations up to each candidate's depth) is negative, as for a loss, a
    perplexity or an error rate. A curve model that extrapolates a falling loss past zero
    predicts what cannot happen, so predictions and interval ends are clipped to it. Nothing
    for a larger-is-better metric: a reward is not bounded by what it reached so far, and an
    accuracy's bound of 1 cannot be told from the values."""
    if mode != "min":
        return -np.inf, np.inf
    lows = [float(v.min()) for c in cands for _, v in c.seeds.values() if v.size]
    return (0.0, np.inf) if lows and min(lows) >= 0 else (-np.inf, np.inf)


def _observed_finals(cands: list[CandidateCurves], acc: _Accumulated) -> None:
    """A population-predicted candidate with a known final whose every seed reached its horizon
    is predicted by the mean its seeds reached: the population model would pull it toward its
    neighbours and clip an outlier to the range the others reached. Its interval keeps the
    model's width (calibrated on how finals differ from what probes reached: a new run's seed
    noise), and is at least the standard error of the seeds' mean. (A candidate its own probes
    predict already gets the mean its seeds reached at the horizon.)"""
    for i in sorted(acc.population):
        c = cands[i]
        lasts = [(float(st[-1]), float(v[-1])) for st, v in c.seeds.values() if st.size]
        if not np.isfinite(c.final) or not lasts or any(step < c.horizon for step, _ in lasts):
            continue
        vals = np.array([v for _, v in lasts])
        sd = float(vals.std(ddof=1)) if vals.size >= 2 else np.nan
        acc.pred[i] = float(vals.mean())
        if np.isfinite(sd):
            acc.std[i] = max(float(acc.std[i]), sd / np.sqrt(vals.size)) if np.isfinite(acc.std[i]) else np.nan


@dataclass
class _Accumulated:
    """What the per-group passes fill in: predictions (in candidate order), the units, and which
    unit speaks for each candidate."""

    pred: np.ndarray
    std: np.ndarray
    units: list[Unit]
    candidate_unit: dict[str, str]
    seed_fits: dict[int, DecayFit] = field(default_factory=dict)  # candidate index -> its seeds' fit
    population: set[int] = field(default_factory=set)  # candidates a population model predicted
    prefix: PrefixPredictions | None = None  # every candidate's own-probe prediction, once asked for


def _prefix_of(cands: list[CandidateCurves], acc: _Accumulated, level: float) -> PrefixPredictions:
    """prefix_predictions of every candidate, computed once (the extrapolations are the cost)."""
    if acc.prefix is None:
        acc.prefix = prefix_predictions(cands, level)
    return acc.prefix


def _analysis_depths(cands: list[CandidateCurves], depth: float | dict[str, float] | None) -> np.ndarray:
    """Each candidate's analysis depth: everything observed (None), one depth, or per candidate
    (a candidate missing from the mapping keeps everything observed)."""
    return np.array(
        [
            (
                c.max_step
                if depth is None
                else float(depth.get(c.candidate, c.max_step))
                if isinstance(depth, dict)
                else float(depth)
            )
            for c in cands
        ]
    )


def _predict_group(
    g: str,
    cands_full: list[CandidateCurves],
    cands: list[CandidateCurves],
    depths: np.ndarray,
    settings: AnalysisSettings,
    rng_seq: np.random.SeedSequence,
    acc: _Accumulated,
) -> float:
    """Predict group g's candidates: out-of-fold from the group's completed runs when there are
    enough of them (and add the population unit), else each from its own seeds. Returns the
    group's L(0) (the spread of finals before any probe), NaN where unknown."""
    idx = [i for i, c in enumerate(cands) if c.group == g]
    gc = [cands[i] for i in idx]
    n_final = sum(np.isfinite(c.final) for c in gc)
    if n_final >= MIN_POPULATION:
        return _population_unit(g, idx, gc, cands_full, depths, settings, rng_seq, acc)
    # No population to learn from: each candidate's own probes predict its final
    # (_prefix_predictions, once every group's seed units are fitted). L(0), the spread of
    # finals before any probe, from the seeds' plain extrapolations.
    if len(gc) >= 3:
        spread = _prefix_of(cands, acc, settings.level).raw_mean[idx]
        spread = spread[np.isfinite(spread)]
        return float(np.var(spread, ddof=1)) if spread.size >= 3 else np.nan
    return np.nan


def _population_unit(
    g: str,
    idx: list[int],
    gc: list[CandidateCurves],
    cands_full: list[CandidateCurves],
    depths: np.ndarray,
    settings: AnalysisSettings,
    rng_seq: np.random.SeedSequence,
    acc: _Accumulated,
) -> float:
    """A group with a population of completed runs: out-of-fold predictions for its candidates,
    and its population unit, U(c) on a depth grid up to the analysis depth with L(0) at depth 0.
    Returns L(0)."""
    m, s = out_of_fold(gc, depths[idx], level=settings.level, n_folds=settings.n_folds, seed=settings.seed)
    known = [cands_full[i] for i in idx if np.isfinite(cands_full[i].final)]
    # A candidate without a final (a run still going) is predicted by the completed runs cut at
    # its own depth (HistoryPredictor), as a plan predicts it from past runs: trained on the
    # completed runs at their depth, the model would learn "the final is the last value" from
    # runs that had reached it, and give a run halfway there a zero-width interval.
    new = [k for k, c in enumerate(gc) if not np.isfinite(c.final)]
    if new:
        # at the depth each has reached (a run that stopped short of --depth is cut where it is)
        reached = np.array([min(float(depths[idx[k]]), gc[k].max_step) for k in new])
        hm, hs = HistoryPredictor(known, level=settings.level, seed=settings.seed).predict(
            [gc[k] for k in new], reached
        )
        m, s = m.copy(), s.copy()
        m[new], s[new] = hm, hs
    acc.pred[idx], acc.std[idx] = m, s
    acc.population.update(i for i, mi in zip(idx, m) if np.isfinite(mi))
    all_steps = np.concatenate([st for c in gc for st, _ in c.seeds.values()])
    grid = _depth_grid(all_steps.min() if all_steps.size else 1.0, float(np.quantile(depths[idx], 0.9)), all_steps)
    U = population_risk(known, grid, seed=settings.seed) if grid.size else np.empty(0)
    L0 = float(population_risk(known, np.array([0.0]), seed=settings.seed)[0])
    fit = fit_decay(
        grid, U, level=settings.level, n_boot=settings.n_boot, rng=np.random.default_rng(rng_seq.spawn(1)[0])
    )
    acc.units.append(Unit(f"group:{g}", "population", grid, U, fit, L0=L0))
    for c in gc:
        acc.candidate_unit[c.candidate] = f"group:{g}"
    return L0


def _add_seed_units(
    g: str,
    cands: list[CandidateCurves],
    depths: np.ndarray,
    settings: AnalysisSettings,
    rng_seq: np.random.SeedSequence,
    group_L0: float,
    acc: _Accumulated,
) -> None:
    """Seed units of group g: every candidate with at least two seeds gets its own decomposition.
    Members share alpha, fitted once on the group's pooled dispersion curve (the family unit).
    Each member's fit is kept for its interval (_prefix_predictions)."""
    members = [i for i, c in enumerate(cands) if c.group == g and len(c.seeds) >= 2]
    if not members:
        return
    all_steps = np.concatenate([st for i in members for st, _ in cands[i].seeds.values()])
    if all_steps.size == 0:
        return
    grid = _depth_grid(all_steps.min(), float(np.max(depths[members])), all_steps)
    fam = fit_family(
        [cands[i] for i in members],
        depths[members],
        grid,
        level=settings.level,
        n_boot=settings.n_boot,
        tolerance=settings.tolerance,
        rng_seq=rng_seq,
    )
    Us, shared, fits = fam.U, fam.shared, fam.fits
    if shared is not None:
        with np.errstate(all="ignore"):
            pooled = np.nanmean(Us, axis=0)
        acc.units.append(Unit(f"family:{g}", "seeds-pooled", grid, pooled, shared, L0=group_L0))
    for row, (i, fit) in enumerate(zip(members, fits)):
        c = cands[i]
        U = Us[row]
        L0 = group_L0
        if not np.isfinite(L0) and np.isfinite(U).any():
            L0 = float(np.nanmax(U))  # conservative: at least the risk of the shallowest probe
        fam_lo = shared.L_int_lo if shared is not None and shared.ok else np.nan
        acc.units.append(Unit(f"candidate:{c.candidate}", "seeds", grid, U, fit, L0=L0, family_L_int_lo=fam_lo))
        acc.candidate_unit[c.candidate] = f"candidate:{c.candidate}"
        acc.seed_fits[i] = fit


def _prefix_predictions(cands: list[CandidateCurves], acc: _Accumulated, level: float) -> None:
    """Candidates no population model predicted: the engine's predictor from their own probes
    (core/prefix_prediction.py), with their seeds' decay fit where they have one. The back-tests
    are pooled over every candidate, as the engine pools them over its whole portfolio."""
    own = [i for i in range(len(cands)) if not np.isfinite(acc.pred[i])]
    if not own:
        return
    pp = _prefix_of(cands, acc, level)
    for i in own:
        acc.pred[i] = float(pp.mean[i])
        acc.std[i] = pp.std(i, acc.seed_fits.get(i))


def _prediction_table(
    cands: list[CandidateCurves],
    depths: np.ndarray,
    acc: _Accumulated,
    level: float,
    support: tuple[float, float] = (-np.inf, np.inf),
) -> dict[str, np.ndarray]:
    """The per-candidate predictions table: prediction, interval at `level` (within the metric's
    `support`), and the regime of the unit that speaks for the candidate."""
    z = norm.ppf(0.5 + level / 2)
    lo, hi = support
    pred, std, candidate_unit = acc.pred, acc.std, acc.candidate_unit
    # Ranked on what the model said, clipped after: candidates clipped to the same bound keep
    # their order.
    score = pred.copy()
    lower, upper = np.clip(pred - z * std, lo, hi), np.clip(pred + z * std, lo, hi)
    pred = np.clip(pred, lo, hi)
    by_name = {u.name: u for u in acc.units}
    regimes = np.array(
        [
            by_name[candidate_unit[c.candidate]].regime.value
            if c.candidate in candidate_unit
            else Regime.UNDETERMINED.value
            for c in cands
        ],
        dtype=object,
    )
    return {
        "candidate": np.array([c.candidate for c in cands], dtype=object),
        "group": np.array([c.group for c in cands], dtype=object),
        "depth": depths,
        "horizon": np.array([c.horizon for c in cands]),
        "predicted_final": pred,
        "rank_score": score,
        "predicted_std": std,
        "lower": lower,
        "upper": upper,
        "regime": regimes,
        "final": np.array([c.final for c in cands]),
        "last_observed": np.array([c.mean_curve()[1][-1] if c.mean_curve()[1].size else np.nan for c in cands]),
    }


def _decide(
    units: list[Unit],
    gamma: float,
    settings: AnalysisSettings,
    thresholds: RegimeThresholds,
    horizons: dict[str, float],
) -> None:
    for u in units:
        f = u.fit
        h = horizons.get(u.name.split(":", 1)[1], float(np.median(list(horizons.values()))))
        if f.ok:
            ch = choose_depth(
                f.L_int, f.K, f.alpha, u.L0, gamma, settings.cost_per_step, c_min=max(f.c_min, 1e-9), horizon=h
            )
            u.c_star, u.J0, u.J_star = float(ch.c_star), float(ch.J0), float(ch.J_star)
        u.regime = Regime(
            classify(f.L_int, u.L0, u.J0, u.J_star, thresholds, np.fmax(f.L_int_lo, u.family_L_int_lo)).item()
        )
        u.reason = explain(u.regime, f.L_int, u.L0, u.J0, u.J_star, thresholds)
        if f.diagnostics:
            u.reason += "; " + "; ".join(DIAGNOSTIC_HELP[d] for d in f.diagnostics)
