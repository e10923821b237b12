"""The peer benchmark suite: every policy on the same worlds and budgets, summaries, targets,
tables and figures (issue 6). benchmarks/peers/run_all.py is the command that runs it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from prehoc_ray.bench.metrics import evaluate
from prehoc_ray.bench.policies import POLICY_NAMES, get_policy
from prehoc_ray.bench.worlds import World, deberta_world, demo_world, synthetic_world

PEERS = ("uniform", "asha")  # the targets compare prehoc's regret with these


@dataclass(frozen=True)
class SuiteConfig:
    """What to run. Defaults: the full benchmark (about 10 minutes on 2 busy cores)."""

    synthetic_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    synthetic_candidates: int = 45
    deberta_seeds: tuple[int, ...] = (0, 1, 2)
    deberta_candidates: int = 30  # per family; 2 families (DeBERTa-base, DeBERTaV3-base) per world
    budgets: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    asha_budgets: tuple[float, ...] = (0.05, 0.1, 0.2)  # Ray Tune costs ~30 ms per reported step here
    policies: tuple[str, ...] = POLICY_NAMES
    datasets: tuple[str, ...] = ("synthetic", "deberta", "demo")
    # The recorded demo portfolio: one set of candidates, worlds differ in which recorded probe
    # seeds play (6 pairs of 4). Its probes stop at 10% of the horizon, so uniform probing of
    # 2 seeds saturates at a budget of 0.2.
    demo_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    demo_budgets: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)


# Policies that learn from a family's past runs; a world without history (the demo) has none.
NEEDS_HISTORY = ("tuneahead", "static_only", "prehoc_history")


def make_world(dataset: str, seed: int, cfg: SuiteConfig) -> World:
    if dataset == "synthetic":
        return synthetic_world(cfg.synthetic_candidates, seed=seed)
    if dataset == "deberta":
        return deberta_world(cfg.deberta_candidates, 2, seed=seed)
    if dataset == "demo":
        return demo_world(seed)
    raise ValueError(f"dataset must be 'synthetic', 'deberta' or 'demo', got {dataset!r}")


def _seeds_and_budgets(dataset: str, cfg: SuiteConfig) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    if dataset == "demo":
        return cfg.demo_seeds, cfg.demo_budgets, cfg.demo_budgets
    seeds = cfg.synthetic_seeds if dataset == "synthetic" else cfg.deberta_seeds
    return seeds, cfg.budgets, cfg.asha_budgets


def run_suite(cfg: SuiteConfig = SuiteConfig(), log=print) -> list[dict]:
    rows = []
    for dataset in cfg.datasets:
        seeds, budgets, asha_budgets = _seeds_and_budgets(dataset, cfg)
        for seed in seeds:
            world = make_world(dataset, seed, cfg)
            for frac in budgets:
                for name in cfg.policies:
                    if name == "asha" and frac not in asha_budgets:
                        continue
                    if name in NEEDS_HISTORY and not world.history:
                        continue
                    t0 = time.perf_counter()
                    res = get_policy(name)(world, frac * world.full_cost, seed=seed)
                    row = evaluate(world, res, frac * world.full_cost)
                    row.update(dataset=dataset, seed=seed, budget_frac=frac, seconds=time.perf_counter() - t0)
                    if name == "prehoc":
                        row["refused"] = res.info.get("refused", 0)
                    rows.append(row)
                    log(f"{dataset:9s} seed={seed} budget={frac:<5} {name:17s} regret={100 * row['regret']:6.2f} "
                        f"spearman={row['spearman']:5.2f} spent={row['spent_frac']:.3f} ({row['seconds']:.1f}s)")
    return rows


@dataclass
class Summary:
    rows: list[dict]
    table: dict[tuple[str, float, str], dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = sorted({(r["dataset"], r["budget_frac"], r["policy"]) for r in self.rows})
        for k in keys:
            rs = [r for r in self.rows if (r["dataset"], r["budget_frac"], r["policy"]) == k]
            reg = np.array([r["regret"] for r in rs])
            out = {"n": len(rs), "regret": reg.mean(), "regret_sem": reg.std(ddof=1) / math.sqrt(len(rs)) if len(rs) > 1 else float("nan")}
            fam = sorted({k for r in rs for k in r if k.startswith("regret[")})
            for m in ("spearman", "rmse", "coverage", "spent_frac", "seconds", "regret_native", *fam):
                vals = np.array([r.get(m, np.nan) for r in rs], float)
                out[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            self.table[k] = out

    def datasets(self) -> list[str]:
        return sorted({k[0] for k in self.table}, key=lambda d: ("synthetic", "deberta", "demo").index(d) if d in ("synthetic", "deberta", "demo") else 9)

    def budgets(self, dataset: str, policy: str | None = None) -> list[float]:
        return sorted({k[1] for k in self.table if k[0] == dataset and (policy is None or k[2] == policy)})

    def policies(self, dataset: str) -> list[str]:
        present = {k[2] for k in self.table if k[0] == dataset}
        return [p for p in POLICY_NAMES if p in present]

    def get(self, dataset: str, budget: float, policy: str, metric: str) -> float:
        v = self.table.get((dataset, budget, policy))
        return float("nan") if v is None else float(v[metric])

    def budget_to_match(self, dataset: str, policy: str, budget: float) -> float:
        """Smallest budget at which `policy`'s mean regret reaches prehoc's at `budget`.

        Linear interpolation in log budget between measured budgets; NaN when the policy
        never reaches it within the measured range (reported as "> max"); the smallest
        measured budget when it already does there (reported as "<= min").
        """
        target = self.get(dataset, budget, "prehoc", "regret")
        grid = self.budgets(dataset, policy)
        reg = [self.get(dataset, b, policy, "regret") for b in grid]
        tol = 1e-12
        for k, (b, r) in enumerate(zip(grid, reg)):
            if r <= target + tol:
                if k == 0:
                    return b
                b0, r0 = grid[k - 1], reg[k - 1]
                t = (r0 - target) / (r0 - r) if r0 != r else 1.0
                return float(np.exp(np.log(b0) + t * (np.log(b) - np.log(b0))))
        return float("nan")

    def target(self, dataset: str, budget: float, peer: str) -> tuple[str, str]:
        """PASS when prehoc's regret <= half the peer's at this budget, or the peer needs >= 3x
        the budget to reach prehoc's regret; otherwise MISS. Both regrets 0: TIE."""
        rp = self.get(dataset, budget, "prehoc", "regret")
        rq = self.get(dataset, budget, peer, "regret")
        if not np.isfinite(rq):
            return "n/a", "peer not run at this budget"
        if rp == 0 and rq == 0:
            return "TIE", "both 0"
        need = self.budget_to_match(dataset, peer, budget)
        grid = self.budgets(dataset, peer)
        if not np.isfinite(need):
            ratio_txt = f"peer never reaches it up to budget {grid[-1]:g}"
        elif need == grid[0] and self.get(dataset, grid[0], peer, "regret") <= rp:
            ratio_txt = f"peer already there at its smallest budget ({need / budget:.2g}x)"
        else:
            ratio_txt = f"peer needs {need / budget:.2f}x"
        half = rq > 0 and rp <= 0.5 * rq
        third = (not np.isfinite(need) and grid[-1] >= 3 * budget) or (np.isfinite(need) and need >= 3 * budget)
        verdict = "PASS" if half or third else "MISS"
        return verdict, f"prehoc {100 * rp:.2f} vs {100 * rq:.2f} pts; {ratio_txt}"


def _fmt(v: float, scale: float = 1.0, nd: int = 2) -> str:
    return "-" if not np.isfinite(v) else f"{scale * v:.{nd}f}"


def verdicts(summary: Summary) -> str:
    """One line per dataset and peer: how many budgets met the target."""
    lines = []
    for ds in summary.datasets():
        for peer in PEERS:
            if peer not in summary.policies(ds):
                continue
            vs = [(b, summary.target(ds, b, peer)[0]) for b in summary.budgets(ds, "prehoc")]
            vs = [(b, v) for b, v in vs if v != "n/a"]
            passed = [f"{b:g}" for b, v in vs if v == "PASS"]
            lines.append(f"- {ds} vs {peer}: {len(passed)}/{len(vs)} budgets PASS"
                         + (f" ({', '.join(passed)})" if passed else ""))
    return "\n".join(lines)


def markdown(summary: Summary) -> str:
    out = []
    for ds in summary.datasets():
        out.append(f"#### {ds}: mean over {max(v['n'] for k, v in summary.table.items() if k[0] == ds)} worlds "
                   "(regret and RMSE in metric points x100; regret +- standard error)\n")
        out.append("| budget | policy | regret | Spearman | RMSE | 90% coverage | spent |")
        out.append("|---:|---|---:|---:|---:|---:|---:|")
        for b in summary.budgets(ds):
            for p in summary.policies(ds):
                v = summary.table.get((ds, b, p))
                if v is None:
                    continue
                reg = f"{100 * v['regret']:.2f} +- {_fmt(v['regret_sem'], 100)}"
                if p == "asha" and np.isfinite(v.get("regret_native", np.nan)):
                    reg += f" (native pick {100 * v['regret_native']:.2f})"
                out.append(f"| {b:g} | {p} | {reg} | {_fmt(v['spearman'])} | {_fmt(v['rmse'], 100)} | "
                           f"{_fmt(v['coverage'])} | {_fmt(v['spent_frac'], 1, 3)} |")
        out.append("")
        fams = sorted({m for k, v in summary.table.items() if k[0] == ds for m in v if m.startswith("regret[")})
        out.append(f"Regret by family ({ds}, points x100):\n")
        out.append("| budget | policy | " + " | ".join(f[7:-1] for f in fams) + " |")
        out.append("|---:|---|" + "---:|" * len(fams))
        for b in summary.budgets(ds):
            for p in summary.policies(ds):
                v = summary.table.get((ds, b, p))
                if v is not None and p != "oracle":
                    out.append(f"| {b:g} | {p} | " + " | ".join(_fmt(v.get(f, float("nan")), 100) for f in fams) + " |")
        out.append("")
        out.append(f"Budget each policy needs to reach prehoc's regret ({ds}; multiple of prehoc's budget):\n")
        peers = [p for p in summary.policies(ds) if p not in ("prehoc", "oracle")]
        out.append("| prehoc budget | " + " | ".join(peers) + " |")
        out.append("|---:|" + "---:|" * len(peers))
        for b in summary.budgets(ds, "prehoc"):
            cells = []
            for p in peers:
                need = summary.budget_to_match(ds, p, b)
                grid = summary.budgets(ds, p)
                if not grid:
                    cells.append("-")
                elif not np.isfinite(need):
                    cells.append(f"> {grid[-1] / b:.2g}x")
                elif need == grid[0] and summary.get(ds, grid[0], p, "regret") <= summary.get(ds, b, "prehoc", "regret"):
                    cells.append(f"<= {need / b:.2g}x")
                else:
                    cells.append(f"{need / b:.2g}x")
            out.append(f"| {b:g} | " + " | ".join(cells) + " |")
        out.append("")
        out.append(f"Targets ({ds}): prehoc regret <= 1/2 of the peer's at equal budget, or the peer needs >= 3x the budget:\n")
        out.append("| budget | vs | verdict | detail |")
        out.append("|---:|---|---|---|")
        for b in summary.budgets(ds, "prehoc"):
            for peer in PEERS:
                if peer in summary.policies(ds):
                    v, why = summary.target(ds, b, peer)
                    out.append(f"| {b:g} | {peer} | {v} | {why} |")
        out.append("")
    return "\n".join(out)


def plot(summary: Summary, path_prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colors = {p: f"C{i}" for i, p in enumerate(POLICY_NAMES)}
    colors["prehoc"] = "k"
    metrics = (("regret", "regret (points)", 100), ("spearman", "Spearman (within family)", 1),
               ("rmse", "RMSE (points)", 100), ("coverage", "90% interval coverage", 1))
    for ds in summary.datasets():
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
        for ax, (m, label, scale) in zip(axes, metrics):
            for p in summary.policies(ds):
                bs = summary.budgets(ds, p)
                ys = [scale * summary.get(ds, b, p, m) for b in bs]
                if not np.isfinite(ys).any():
                    continue
                ax.plot(bs, ys, "o-", label=p, color=colors[p], lw=2.5 if p == "prehoc" else 1.5)
            if m == "coverage":
                ax.axhline(0.9, color="grey", ls=":")
            ax.set_xscale("log")
            ax.set_xticks(summary.budgets(ds), [f"{b:g}" for b in summary.budgets(ds)])
            ax.minorticks_off()
            ax.set_xlabel("probe budget (fraction of fully training every candidate)")
            ax.set_title(label)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{ds}: policies at equal probe budget")
        fig.tight_layout()
        path = f"{path_prefix}{ds}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
