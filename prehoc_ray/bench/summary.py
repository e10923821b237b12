"""Tables, verdicts and figures from backtest rows (bench.backtest), with paired intervals.

The unit of comparison is a *world* when a dataset has 5 or more (independent draws of a
portfolio), else a *task* (a team's own table, the recorded demo: each task is one selection
problem, pooled over the few worlds that replay it).
A policy's regret on a unit is its mean over tasks and repeats; intervals are percentile
bootstraps over units; prehoc is compared with every peer by the paired difference on the
same units (bench.stats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prehoc_ray.bench.stats import PairedDifference, bootstrap_mean_ci, paired_difference

SUBJECT = "prehoc"
PEERS = ("uniform", "sh", "asha", "asha_extrapolated")
ORDER = (
    "prehoc",
    "prehoc_prediction",
    "prehoc_history",
    "uniform",
    "sh",
    "asha",
    "asha_extrapolated",
    "static_only",
    "tuneahead",
    "lc_extrapolation",
    "oracle",
)


@dataclass
class Summary:
    rows: list[dict]  # one per (world, budget, policy, repeat)
    picks: list[dict]  # one per (world, budget, policy, repeat, task)

    def datasets(self) -> list[str]:
        seen: list[str] = []
        for r in self.rows:
            if r.get("dataset", "table") not in seen:
                seen.append(r.get("dataset", "table"))
        return seen

    def _rows(self, dataset: str) -> list[dict]:
        return [r for r in self.rows if r.get("dataset", "table") == dataset]

    def budgets(self, dataset: str, policy: str | None = None) -> list[float]:
        return sorted({float(r["budget_frac"]) for r in self._rows(dataset) if policy is None or r["policy"] == policy})

    def policies(self, dataset: str) -> list[str]:
        present = {r["policy"] for r in self._rows(dataset)}
        return [p for p in ORDER if p in present] + sorted(present - set(ORDER))

    def unit(self, dataset: str) -> str:
        return "world" if len({r["world"] for r in self._rows(dataset)}) >= 5 else "task"

    def unit_values(self, dataset: str, budget: float, policy: str, metric: str = "regret") -> dict:
        """Unit -> the metric averaged over its repeats (and tasks, for world units)."""
        acc: dict = {}
        if self.unit(dataset) == "task" and metric == "regret":
            for p in self.picks:
                if (
                    p.get("dataset", "table") == dataset
                    and p["policy"] == policy
                    and math.isclose(p["budget_frac"], budget)
                ):
                    # the task, pooled over this dataset's worlds: they replay the same candidates
                    # (seed pairs of the demo, portfolios of one table), so they are not independent
                    acc.setdefault(p["group"], []).append(float(p["regret"]))
        else:
            for r in self._rows(dataset):
                if r["policy"] == policy and math.isclose(r["budget_frac"], budget) and metric in r:
                    acc.setdefault(r["world"], []).append(float(r[metric]))
        return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in acc.items()}

    def cell(self, dataset: str, budget: float, policy: str, metric: str = "regret") -> tuple[float, float, float, int]:
        """(mean, lo, hi, units) of a metric over units."""
        vals = np.array(list(self.unit_values(dataset, budget, policy, metric).values()), float)
        vals = vals[np.isfinite(vals)]
        if not vals.size:
            return float("nan"), float("nan"), float("nan"), 0
        lo, hi = bootstrap_mean_ci(vals)
        return float(vals.mean()), lo, hi, int(vals.size)

    def mean(self, dataset: str, budget: float, policy: str, metric: str) -> float:
        vals = [
            float(r[metric])
            for r in self._rows(dataset)
            if r["policy"] == policy and math.isclose(r["budget_frac"], budget) and metric in r
        ]
        vals = [v for v in vals if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def repeat_spread(self, dataset: str, budget: float, policy: str) -> float:
        """Std over repeats of the dataset-mean regret (ASHA's asynchrony); NaN for one repeat."""
        by_rep: dict[int, list[float]] = {}
        for r in self._rows(dataset):
            if r["policy"] == policy and math.isclose(r["budget_frac"], budget):
                by_rep.setdefault(int(r["repeat"]), []).append(float(r["regret"]))
        if len(by_rep) < 2:
            return float("nan")
        return float(np.std([np.mean(v) for v in by_rep.values()], ddof=1))

    def compare(self, dataset: str, budget: float, peer: str, subject: str = SUBJECT) -> PairedDifference:
        return paired_difference(self.unit_values(dataset, budget, subject), self.unit_values(dataset, budget, peer))

    def verdicts(self, subject: str = SUBJECT) -> list[dict]:
        out = []
        for ds in self.datasets():
            for peer in [p for p in self.policies(ds) if p in PEERS or p == "prehoc_prediction"]:
                if peer == subject:
                    continue
                for b in self.budgets(ds, subject):
                    if b not in self.budgets(ds, peer):
                        continue
                    d = self.compare(ds, b, peer, subject)
                    out.append(
                        {
                            "dataset": ds,
                            "budget": b,
                            "peer": peer,
                            "diff": d.mean,
                            "lo": d.lo,
                            "hi": d.hi,
                            "n": d.n,
                            "wins": d.wins,
                            "losses": d.losses,
                            "p": d.p,
                            "verdict": d.verdict.value,
                        }
                    )
        return out


def _finite_mean(values: list[float]) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _pts(v: float, nd: int = 2) -> str:
    return "-" if not math.isfinite(v) else f"{100 * v:.{nd}f}"


def _num(v: float, nd: int = 2) -> str:
    return "-" if not math.isfinite(v) else f"{v:.{nd}f}"


def verdict_lines(s: Summary, subject: str = SUBJECT) -> str:
    lines = []
    by: dict[tuple[str, str], list[dict]] = {}
    for v in s.verdicts(subject):
        by.setdefault((v["dataset"], v["peer"]), []).append(v)
    for (ds, peer), vs in by.items():
        cells = ", ".join(
            f"{v['budget']:g}: {v['verdict']} ({_pts(v['diff'])} [{_pts(v['lo'])}, {_pts(v['hi'])}])" for v in vs
        )
        lines.append(f"- {ds}, {subject} vs {peer}: {cells}")
    return "\n".join(lines)


def markdown(s: Summary, subject: str = SUBJECT) -> str:
    out = []
    for ds in s.datasets():
        rows = s._rows(ds)
        worlds = sorted({r["world"] for r in rows})
        unit = s.unit(ds)
        r_full = _finite_mean([r.get("r_full", np.nan) for r in rows])
        orc = _finite_mean([r.get("oracle_regret", np.nan) for r in rows])
        has_exp = any("regret_expected" in r for r in rows)
        out.append(f"#### {ds}: {len(worlds)} world(s), intervals over {unit}s\n")
        out.append(
            f"Regret in metric points x100 (mean over {unit}s, 95% bootstrap interval). "
            f"R_full (choosing by the probe seeds' mean at full depth, the floor probing cannot remove): "
            f"{_pts(r_full)}; expected-final oracle: {_pts(orc)}.\n"
        )
        head = (
            "| budget | policy | regret [95% CI] | "
            + ("regret vs expected finals | " if has_exp else "")
            + "repeat spread | spent | Spearman | 90% coverage |"
        )
        out.append(head)
        out.append("|---:|---|---:|" + ("---:|" if has_exp else "") + "---:|---:|---:|---:|")
        for b in s.budgets(ds):
            for p in s.policies(ds):
                if b not in s.budgets(ds, p):
                    continue
                m, lo, hi, n = s.cell(ds, b, p)
                exp = f" {_pts(s.cell(ds, b, p, 'regret_expected')[0])} |" if has_exp else ""
                out.append(
                    f"| {b:g} | {p} | {_pts(m)} [{_pts(lo)}, {_pts(hi)}] |{exp} {_pts(s.repeat_spread(ds, b, p))} | "
                    f"{_num(s.mean(ds, b, p, 'spent_frac'), 3)} | {_num(s.mean(ds, b, p, 'spearman'))} | "
                    f"{_num(s.mean(ds, b, p, 'coverage'))} |"
                )
        out.append("")
        mono = []
        for p in s.policies(ds):
            bs = s.budgets(ds, p)
            if p == "oracle" or len(bs) < 2:
                continue
            cells = [s.cell(ds, b, p) for b in bs]
            # more budget may not make the pick worse beyond the noise: each mean stays within
            # the previous budget's interval or below it
            ok = all(c2[0] <= c1[2] + 1e-12 for c1, c2 in zip(cells, cells[1:]) if math.isfinite(c1[2]))
            mono.append(f"{p} {'yes' if ok else 'NO'}")
        if mono:
            out.append(
                "Regret non-increasing in budget (each mean within or below the previous budget's interval): "
                + ", ".join(mono)
                + ".\n"
            )
        vs = [v for v in s.verdicts(subject) if v["dataset"] == ds]
        if vs:
            out.append(
                f"Paired difference of regret, {subject} minus peer (points x100; negative = {subject} better), "
                f"95% bootstrap-t interval over {unit}s and the sign-flip permutation p; PASS = interval below 0 "
                f"and p < 0.05, LOSS = above 0 and p < 0.05, else TIE; n/a below 5 {unit}s:\n"
            )
            out.append(f"| budget | peer | difference [95% CI] | {unit}s {subject} better / worse | p | verdict |")
            out.append("|---:|---|---:|---:|---:|---|")
            for v in vs:
                out.append(
                    f"| {v['budget']:g} | {v['peer']} | {_pts(v['diff'])} [{_pts(v['lo'])}, {_pts(v['hi'])}] | "
                    f"{v['wins']} / {v['losses']} of {v['n']} | {_num(v['p'], 3)} | {v['verdict']} |"
                )
            out.append("")
    return "\n".join(out)


def plot(s: Summary, path_prefix: str) -> list[str]:
    """One PNG per dataset: mean regret against budget per policy, with 95% bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for ds in s.datasets():
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        top = 0.0  # the probing policies' range: a far-off static-only line is named, not drawn
        for p in s.policies(ds):
            if p not in ("static_only", "oracle"):
                top = max(
                    [top] + [100 * c[2] for b in s.budgets(ds, p) for c in [s.cell(ds, b, p)] if math.isfinite(c[2])]
                )
        off_scale = []
        for k, p in enumerate(s.policies(ds)):
            bs = s.budgets(ds, p)
            cells = [s.cell(ds, b, p) for b in bs]
            m = np.array([100 * c[0] for c in cells])
            lo = np.array([100 * c[1] for c in cells])
            hi = np.array([100 * c[2] for c in cells])
            color = "k" if p == SUBJECT else f"C{k % 10}"
            if p == "oracle":
                ax.axhline(m[0], color="grey", ls=":", label="expected-final oracle" if m[0] > 0 else "oracle (0)")
                continue
            if top > 0 and np.nanmin(m) > 1.5 * top:
                off_scale.append(f"{p}: {np.nanmean(m):.1f}")
                continue
            ax.plot(bs, m, "o-", color=color, label=p, lw=2.5 if p == SUBJECT else 1.4)
            if np.isfinite(lo).all():
                ax.fill_between(bs, lo, hi, color=color, alpha=0.12)
        r_full = _finite_mean([r.get("r_full", np.nan) for r in s._rows(ds)])
        if math.isfinite(r_full):
            ax.axhline(100 * r_full, color="grey", ls="--", label="R_full")
        if off_scale:
            ax.text(
                0.99,
                0.98,
                "off scale: " + ", ".join(off_scale),
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
            )
        ax.set_xscale("log")
        bs = s.budgets(ds)
        ax.set_xticks(bs, [f"{b:g}" for b in bs])
        ax.minorticks_off()
        ax.set_xlabel("probe budget (fraction of fully training every candidate once)")
        ax.set_ylabel("regret (points)")
        ax.set_title(f"{ds}: regret of the pick per task, 95% bands over {s.unit(ds)}s")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = f"{path_prefix}{ds}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
