"""`prehoc-ray simulate`: a policy against the synthetic generator, with the ground truth.

    prehoc-ray simulate --candidates N --budget B --seed S --out DIR [--policy NAME]

Builds a synthetic portfolio (three families: Static-Sufficient, Dynamic-Critical,
Noise-Dominant; prehoc_ray.bench.worlds.synthetic_world), runs the policy (default: the
project's engine) with a probe budget of B x the cost of fully training every candidate, and
writes:

- plan.parquet: one row per candidate: candidate, group, predicted_final, predicted_std,
  lower, upper (the 90% interval), regime (the engine's; empty for other policies),
  probe_steps, probe_cost_s, selected. Selection rule: in each family (group) the candidate
  with the best predicted final is selected (a candidate without a prediction counts as the
  family's mean prediction; ties go to the first candidate).
- truth.parquet: candidate, group, true_final, true_regime, true_L_int, true_K, true_alpha,
  expected_final, horizon: what the generator knows and no policy sees.

Bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prehoc_ray.cli import EXIT_BAD_INPUT, app

POLICY_HELP = (
    "prehoc (the engine), prehoc_prediction (the engine spending on prediction variance), prehoc_history "
    "(the engine told the world's past runs), uniform, sh (successive halving), asha, tuneahead, lc_extrapolation, "
    "static_only, oracle (the expected finals: a reference)"
)


@app.command("simulate")
def simulate_cmd(
    out: Path = typer.Option(..., "--out", help="directory for plan.parquet and truth.parquet"),
    candidates: int = typer.Option(60, "--candidates", help="candidates, split over 3 families"),
    budget: float = typer.Option(
        0.1, "--budget", help="probe budget as a fraction of the cost of fully training every candidate"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the generator and the policy"),
    policy: str = typer.Option("prehoc", "--policy", help=POLICY_HELP),
) -> None:
    """Run a policy against the synthetic generator and write the plan with the ground truth."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy.stats import norm

    from prehoc_ray.bench.backtest import ORACLE, oracle_result
    from prehoc_ray.bench.market import Market
    from prehoc_ray.bench.metrics import evaluate, picks_of
    from prehoc_ray.bench.policies import POLICY_NAMES, get_policy
    from prehoc_ray.bench.worlds import synthetic_world

    problems = []
    if candidates < 3:
        problems.append(f"--candidates must be >= 3 (one per family), got {candidates}")
    if not (budget > 0 and np.isfinite(budget)):
        problems.append(f"--budget must be a fraction > 0 of the full-training cost, got {budget}")
    if policy not in POLICY_NAMES + (ORACLE,):
        problems.append(f"--policy must be one of {', '.join(POLICY_NAMES)}, got {policy!r}")
    if problems:
        typer.echo("error: " + "; ".join(problems), err=True)
        raise typer.Exit(EXIT_BAD_INPUT)

    world = synthetic_world(candidates, seed=seed)
    budget_s = budget * world.full_cost
    res = oracle_result(world) if policy == ORACLE else get_policy(policy)(Market(world, budget_s), seed=seed)
    picks = set(picks_of(world, res).values())
    z = float(norm.ppf(0.95))
    n = len(world.candidates)
    cost = np.zeros(n)
    if res.policy == "prehoc":
        rows = res.info["rows"]
        cost = np.array([r["probe_cost_s"] for r in rows])
    else:
        # Policies buy whole steps of every seed they ran; reconstruct their charge per candidate.
        seeds = {"uniform": world.probe_seeds}.get(res.policy, 1)
        cost = np.array([c.cost_per_step * d * seeds for c, d in zip(world.candidates, res.probe_steps)])
        if res.policy == "oracle":
            cost = np.zeros(n)
    regime = res.regime if res.regime is not None else np.full(n, "", dtype=object)
    plan = {
        "candidate": [c.id for c in world.candidates],
        "group": [c.group for c in world.candidates],
        "predicted_final": res.predicted,
        "predicted_std": res.std,
        "lower": res.predicted - z * res.std,
        "upper": res.predicted + z * res.std,
        "regime": [str(r) for r in regime],
        "probe_steps": res.probe_steps.astype(int),
        "probe_cost_s": cost,
        "selected": [i in picks for i in range(n)],
    }
    tr = world.truth
    truth = {
        "candidate": [str(c) for c in tr["candidate"]],
        "group": [str(g) for g in tr["group"]],
        "true_final": tr["true_final"],
        "true_regime": [str(r) for r in tr["regime"]],
        "true_L_int": tr["L_int"],
        "true_K": tr["K"],
        "true_alpha": tr["alpha"],
        "expected_final": tr["expected_final"],
        "horizon": tr["horizon"],
    }
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(plan), out / "plan.parquet")
    pq.write_table(pa.table(truth), out / "truth.parquet")
    m = evaluate(world, res, budget_s)
    typer.echo(
        f"{policy}: {n} candidates, budget {budget_s:.1f} device-s ({budget:g} of full training), "
        f"spent {res.spent:.1f} ({m['spent_frac']:.3f}); regret {100 * m['regret']:.2f} pts, "
        f"Spearman {m['spearman']:.2f}, RMSE {100 * m['rmse']:.2f} pts, coverage {m['coverage']:.2f}"
    )
    typer.echo(f"wrote {out / 'plan.parquet'} and {out / 'truth.parquet'}")
