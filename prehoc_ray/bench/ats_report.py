"""Tables and figure of the 30-LLM study (bench.scaling) next to the paper's published AtS."""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench import scaling

SHOWN = ("ats", "rectified", "prehoc", "prehoc_unclipped", "subtuning", "zero_shot", "model_size")
PUB_NAME = {"ats": "AtS", "subtuning": "SubTuning", "zero_shot": "ZeroShot", "model_size": "ModelSize"}


def compute() -> tuple[list[dict], dict]:
    return scaling.table(), scaling.published()


def reproduction_check(rows: list[dict], pub: dict) -> tuple[int, int, float]:
    """(matching cells, cells compared, largest absolute difference) for the paper's methods."""
    diffs = []
    for r in rows:
        name = PUB_NAME.get(r["method"])
        if name is None:
            continue
        for metric in ("PearCorr", "RelAcc"):
            diffs.append(abs(round(r[metric], 1) - pub[(r["dataset"], name, metric, r["ratio"])]))
    d = np.array(diffs)
    return int((d < 0.051).sum()), int(d.size), float(d.max())


def markdown(rows: list[dict], pub: dict, ours: tuple[str, ...] = ("prehoc", "prehoc_unclipped")) -> str:
    by = {(r["dataset"], r["method"], r["ratio"]): r for r in rows}
    out = []
    ok, n, worst = reproduction_check(rows, pub)
    out.append(
        f"Reproduction of the paper's Table 1 (AtS, ZeroShot, SubTuning, ModelSize): {ok}/{n} cells equal "
        f"to the published value at the published precision (largest difference {worst:.2f}).\n"
    )
    for metric in ("PearCorr", "RelAcc"):
        out.append(f"#### {metric} (%), higher is better\n")
        out.append("| dataset | method | " + " | ".join(f"1/{r}" for r in scaling.RATIOS) + " |")
        out.append("|---|---|" + "---:|" * len(scaling.RATIOS))
        for ds in ("FLAN", "WMT19", "GIGAWORD"):
            out.append(
                f"| {ds} | AtS (published) | "
                + " | ".join(f"{pub[(ds, 'AtS', metric, r)]:.1f}" for r in scaling.RATIOS)
                + " |"
            )
            for m in SHOWN:
                out.append(
                    f"| {ds} | {m} | " + " | ".join(f"{by[(ds, m, r)][metric]:.1f}" for r in scaling.RATIOS) + " |"
                )
        out.append("")
    out.append(
        "Ours against the published AtS per task and budget, compared at the published precision "
        "(one decimal; equal at that precision is a tie). The published figures have no intervals, so "
        "a cell is a win, tie or loss by its point value only:\n"
    )
    out.append(
        "| ours | dataset | metric | " + " | ".join(f"1/{r}" for r in scaling.RATIOS) + " | wins / ties / losses |"
    )
    out.append("|---|---|---|" + "---:|" * len(scaling.RATIOS) + "---|")
    for variant in ours:
        for ds in ("FLAN", "WMT19", "GIGAWORD"):
            for metric in ("PearCorr", "RelAcc"):
                cells, signs = [], []
                for r in scaling.RATIOS:
                    a, b = round(by[(ds, variant, r)][metric], 1), pub[(ds, "AtS", metric, r)]
                    sign = ">" if a > b else ("=" if a == b else "<")
                    signs.append(sign)
                    cells.append(f"{a:.1f} {sign} {b:.1f}")
                verdict = f"{signs.count('>')} / {signs.count('=')} / {signs.count('<')}"
                out.append(f"| {variant} | {ds} | {metric} | " + " | ".join(cells) + f" | {verdict} |")
    out.append("")
    return "\n".join(out)


def verdict_line(rows: list[dict], pub: dict, ours: str = "prehoc") -> str:
    by = {(r["dataset"], r["method"], r["ratio"]): r for r in rows}
    cells = [(ds, m, r) for ds in ("FLAN", "WMT19", "GIGAWORD") for m in ("PearCorr", "RelAcc") for r in scaling.RATIOS]
    ours_v = [round(by[(ds, ours, r)][m], 1) for ds, m, r in cells]
    theirs = [pub[(ds, "AtS", m, r)] for ds, m, r in cells]
    wins = sum(a > b for a, b in zip(ours_v, theirs))
    ties = sum(a == b for a, b in zip(ours_v, theirs))
    return f"{wins} wins / {ties} ties / {len(cells) - wins - ties} losses over {len(cells)} (dataset, metric, budget) cells"


def plot(rows: list[dict], pub: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["dataset"], r["method"], r["ratio"]): r for r in rows}
    fig, axes = plt.subplots(2, 3, figsize=(15, 7))
    x = np.array(scaling.RATIOS)
    for j, ds in enumerate(("FLAN", "WMT19", "GIGAWORD")):
        for i, metric in enumerate(("PearCorr", "RelAcc")):
            ax = axes[i, j]
            ax.plot(x, [pub[(ds, "AtS", metric, r)] for r in x], "s-", color="k", lw=2.5, label="AtS (published)")
            for m in ("ats", "rectified", "prehoc", "prehoc_unclipped", "subtuning"):
                ax.plot(
                    x,
                    [by[(ds, m, r)][metric] for r in x],
                    "o--" if m == "ats" else "o-",
                    ms=4,
                    label="AtS (our re-run)" if m == "ats" else m,
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [f"1/{r}" for r in x])
            ax.set_title(f"{ds} {metric}")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
