"""Scoring a policy's predictions against the truth.

Selection rule: the policy's own picks where it makes them (PolicyResult.picks: ASHA's best
reported value, successive halving's last survivor); otherwise, in each family (group = one
task / base model), the candidate with the best predicted final (ties: the first in world
order). A
candidate the policy has no prediction for (never probed) gets its family's mean prediction;
a family with no prediction at all gets the mean prediction over the world (for RMSE) and its
first candidate is selected (a random pick, since world order is random w.r.t. quality).

Per world and budget:
- regret: mean over families of (best true final - true final of the selected candidate),
  in metric units (0 for the oracle);
- spearman: mean over families of the Spearman correlation of predicted and true finals
  (0 where the predictions are constant);
- rmse: root mean squared error of predicted vs true finals over all candidates;
- regret[kind]: the same for one family, keyed by the family's kind (regime or base model);
- coverage: fraction of true finals inside the central `level` interval (pred +- z std) over
  the candidates with a finite std; NaN when the policy gives no std (`std_frac` says how
  many had one).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, spearmanr

from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.bench.worlds import World


def filled_predictions(world: World, predicted: np.ndarray) -> np.ndarray:
    pred = np.asarray(predicted, float).copy()
    groups = world.groups
    everywhere = pred[np.isfinite(pred)]
    fallback = float(everywhere.mean()) if everywhere.size else 0.0
    for g in set(groups):
        m = groups == g
        finite = pred[m & np.isfinite(pred)]
        pred[m & ~np.isfinite(pred)] = finite.mean() if finite.size else fallback
    return pred


def select(world: World, predicted: np.ndarray) -> dict[str, int]:
    """Group -> index of the selected candidate (best filled prediction, first on ties)."""
    pred = filled_predictions(world, predicted)
    groups = world.groups
    out = {}
    for g in sorted(set(groups)):
        idx = np.flatnonzero(groups == g)
        out[g] = int(idx[np.argmax(pred[idx])])
    return out


def picks_of(world: World, result: PolicyResult) -> dict[str, int]:
    """The policy's picks, completed by the best-prediction rule for tasks it left open."""
    by_pred = select(world, result.predicted)
    own = result.picks or {}
    return {g: int(own.get(g, i)) for g, i in by_pred.items()}


def regret_of(world: World, picks: dict[str, int]) -> float:
    y = world.true_finals
    groups = world.groups
    return float(np.mean([y[groups == g].max() - y[i] for g, i in picks.items()]))


def full_depth_regret(world: World, seeds: int) -> float:
    """R_full: the regret of choosing by the mean of `seeds` probe seeds at full depth.

    The floor no probing removes (the final's own seed noise); NaN when the recorded probes do
    not reach the horizon (the demo world), since then nobody knows what full-depth probes say.
    """
    means = []
    for c in world.candidates:
        if world.probe_cap(c) < c.horizon:
            return float("nan")
        vals = []
        for s in range(min(seeds, c.n_seeds)):
            st, v = c.curve(s)
            if not st.size or st[-1] < c.horizon:
                return float("nan")
            vals.append(float(v[-1]))
        means.append(float(np.mean(vals)))
    return regret_of(world, select(world, np.array(means)))


def expected_oracle_regret(world: World) -> float:
    """Regret of picking by each candidate's expected final, where the world knows it (the
    achievable floor: the realised final still carries its run's own noise); NaN otherwise."""
    m = world.truth.get("expected_final") if world.truth else None
    if m is None or len(m) != len(world.candidates):
        return float("nan")
    return regret_of(world, select(world, np.asarray(m, float)))


def evaluate(world: World, result: PolicyResult, budget: float, level: float = 0.9) -> dict:
    y = world.true_finals
    pred = filled_predictions(world, result.predicted)
    groups = world.groups
    picks = picks_of(world, result)
    rhos = []
    for g in sorted(set(groups)):
        m = groups == g
        if np.ptp(pred[m]) == 0 or np.ptp(y[m]) == 0:
            rhos.append(0.0)
        else:
            rhos.append(float(spearmanr(pred[m], y[m])[0]))
    std = np.asarray(result.std, float)
    has = np.isfinite(std) & np.isfinite(result.predicted)
    z = float(norm.ppf(0.5 + level / 2))
    cov = float(np.mean(np.abs(y[has] - result.predicted[has]) <= z * std[has])) if has.any() else float("nan")
    row = {
        "world": world.name,
        "policy": result.policy,
        "budget_frac": budget / world.full_cost,
        "spent_frac": result.spent / world.full_cost,
        "regret": regret_of(world, picks),
        "spearman": float(np.mean(rhos)),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "coverage": cov,
        "std_frac": float(np.mean(has)),
        "predicted_frac": float(np.mean(np.isfinite(result.predicted))),
    }
    # Per family kind (the group name after its "fN-"/"gN-" prefix: the regime or the base
    # model), so that a mean regret can be traced to the family that drives it.
    for g, i in picks.items():
        row[f"regret[{g.split('-', 1)[-1]}]"] = float(y[groups == g].max() - y[i])
    m = world.truth.get("expected_final") if world.truth else None
    if m is not None and len(m) == len(world.candidates):
        # Against expected finals (synthetic worlds): the decision's quality without the
        # realised final's own run noise, a lower-variance view of the same picks.
        m = np.asarray(m, float)
        row["regret_expected"] = float(np.mean([m[groups == g].max() - m[i] for g, i in picks.items()]))
    if result.native_pick is not None:
        row["regret_native"] = regret_of(world, {g: result.native_pick.get(g, picks[g]) for g in picks})
    return row
