"""Plots of one run: phase diagram, decay fits, probe spend over time, savings (PNG files).

matplotlib's object API (Figure, no pyplot): no global state, no display, safe in a Ray
driver or a test process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, NullFormatter

from prehoc_ray.core.budget import c_star as c_star_fn
from prehoc_ray.core.observations import CandidateCurves
from prehoc_ray.report.analysis_plots import REGIME_COLORS as _ANALYSIS_COLORS
from prehoc_ray.report.run_data import _num

# The offline analysis's palette, keyed by the regime's text (the run's tables hold strings).
REGIME_COLORS = {r.value: c for r, c in _ANALYSIS_COLORS.items()}
DECISION_MARKERS = {"run": "*", "probe more": "^", "skip": "o"}
DPI = 110


def _save(fig: Figure, path: Path, tight: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)
    return path


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def static_dynamic_boundary(
    alpha: np.ndarray, K: float, L0: float, gamma: float, lam: float, c_min: float, cap: float
) -> np.ndarray:
    """L_int at which J(c*) = J(0) for each alpha: probing pays (Dynamic-Critical) left of it.

    J(c*) = L_int + K c*^-alpha + gamma lambda c* and J(0) = L(0), so the boundary is
    L_int = L(0) - K c*^-alpha - gamma lambda c*, with c* clipped to [c_min, cap].
    """
    cs = c_star_fn(alpha, K, gamma, lam, c_min, cap)
    return L0 - K * cs ** (-alpha) - gamma * lam * cs


def phase_diagram(
    fits: Mapping[str, Mapping[str, Any]],
    decisions: Mapping[str, str],
    tolerance: float,
    path: Path,
    seeds: int = 3,
    c_min: float = 10.0,
) -> Path:
    """Every candidate at (L_int, alpha), coloured by regime, shaped by decision, with boundaries.

    Noise-Dominant right of L_int = tau^2. Static-Sufficient / Dynamic-Critical is drawn at the
    portfolio's median K, L(0), gamma and cost per step (each candidate's own boundary
    depends on its own K and L(0), so a point may sit across the drawn line).
    """
    tau2 = tolerance**2
    names = [n for n, f in fits.items() if _finite(f.get("alpha"))]
    floor = tau2 * 1e-3
    L = np.array([max(float(fits[n]["L_int"]), floor) if _finite(fits[n].get("L_int")) else np.nan for n in names])
    A = np.array([float(fits[n]["alpha"]) for n in names])
    fig = Figure(figsize=(9.5, 5.2))
    ax = fig.add_subplot()
    x_lo = floor / 2
    x_hi = max(tau2 * 30, float(np.nanmax(L)) * 3 if L.size and np.isfinite(L).any() else tau2 * 30)
    y_hi = max(1.2, float(np.nanmax(A)) * 1.08 if A.size else 1.2)
    alpha_grid = np.linspace(1e-3, y_hi, 200)
    ax.axvspan(tau2, x_hi, color=REGIME_COLORS["Noise-Dominant"], alpha=0.08)
    ax.axvline(tau2, color=REGIME_COLORS["Noise-Dominant"], lw=1.5, ls="--")
    ax.text(
        tau2 * 1.1,
        y_hi * 0.97,
        f"L_int = tau^2 = {tau2:.2g}",
        color=REGIME_COLORS["Noise-Dominant"],
        va="top",
        fontsize=8,
    )

    def med(k):
        return (
            float(np.nanmedian([float(f[k]) for f in fits.values() if _finite(f.get(k))]))
            if any(_finite(f.get(k)) for f in fits.values())
            else float("nan")
        )

    K, L0, gamma, lam = med("K"), med("L0"), med("gamma"), med("cost_per_step_s") * seeds
    cap = med("c_star") if _finite(med("c_star")) else 1e6
    cap = max(cap, c_min) * 10
    drew_boundary = False
    if all(_finite(v) and v > 0 for v in (K, L0, gamma, lam)):
        bnd = static_dynamic_boundary(alpha_grid, K, L0, gamma, lam, c_min, cap)
        fill = np.clip(bnd, x_lo, tau2)
        ax.fill_betweenx(alpha_grid, x_lo, fill, color=REGIME_COLORS["Dynamic-Critical"], alpha=0.08)
        # Where the boundary lies beyond tau^2 the Noise-Dominant line is the boundary.
        ok = (bnd > floor) & (bnd < tau2 * 0.999)
        if ok.any():
            ax.plot(np.where(ok, bnd, np.nan), alpha_grid, color=REGIME_COLORS["Dynamic-Critical"], lw=1.5, ls="-.")
            drew_boundary = True
    if L0 <= tau2 if _finite(L0) else False:
        ax.text(x_lo * 1.5, y_hi * 0.9, "median L(0) <= tau^2: static information suffices", fontsize=8)
    ax.axvspan(x_lo, tau2, color=REGIME_COLORS["Static-Sufficient"], alpha=0.05, zorder=-1)

    for n, x, y in zip(names, L, A):
        if not np.isfinite(x):
            continue
        reg = str(fits[n].get("regime") or "Undetermined")
        dec = decisions.get(n, "")
        ax.scatter(
            [x],
            [y],
            s=140 if dec == "run" else 50,
            marker=DECISION_MARKERS.get(dec, "o"),
            color=REGIME_COLORS.get(reg, REGIME_COLORS["Undetermined"]),
            edgecolor="black",
            linewidth=0.6,
            zorder=3,
        )
    # Labels for the candidates that matter (all of them in a small portfolio).
    for n, x, y in zip(names, L, A):
        if np.isfinite(x) and (len(names) <= 8 or decisions.get(n) in ("run", "probe more")):
            ax.annotate(n, (x, y), fontsize=6, xytext=(5, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(0, y_hi)
    ax.set_xlabel("intrinsic floor L_int (variance, metric units^2; log)")
    ax.set_ylabel("revelation rate alpha")
    ax.set_title("Phase diagram: where each candidate sits")
    handles = [Patch(color=c, alpha=0.5, label=r) for r, c in REGIME_COLORS.items()]
    handles += [
        Line2D([], [], marker=m, ls="", color="black", label=d)
        for d, m in DECISION_MARKERS.items()
        if d in decisions.values()
    ]
    handles.append(Line2D([], [], color=REGIME_COLORS["Noise-Dominant"], ls="--", label="Noise-Dominant boundary"))
    if drew_boundary:
        handles.append(
            Line2D(
                [], [], color=REGIME_COLORS["Dynamic-Critical"], ls="-.", label="J(c*) = J(0) at median K, L(0), gamma"
            )
        )
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.85)
    if np.any(L <= floor):
        ax.text(x_lo * 1.2, 0.02 * y_hi, f"L_int <= {floor:.1g} drawn at the left edge", fontsize=7, color="#555")
    return _save(fig, path)


def decay_grid(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fits: Mapping[str, Mapping[str, Any]],
    order: Sequence[str],
    tolerance: float,
    path: Path,
    max_panels: int = 16,
) -> Path:
    """U(c) (seed dispersion from the store's points) with the fitted envelope L_int + K c^-alpha."""
    names = [n for n in order if n in curves and curves[n][0].size][:max_panels]
    ncol = 4 if len(names) > 4 else max(1, len(names))
    nrow = max(1, math.ceil(len(names) / ncol))
    fig = Figure(figsize=(3.1 * ncol, 2.5 * nrow))
    if not names:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no probe points with two or more seeds yet", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    tau2 = tolerance**2
    for k, n in enumerate(names):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        c, U = curves[n]
        f = fits.get(n, {})
        reg = str(f.get("regime") or "Undetermined")
        color = REGIME_COLORS.get(reg, REGIME_COLORS["Undetermined"])
        pos = U > 0
        ax.scatter(c[pos], U[pos], s=14, color=color, zorder=3, label="U(c) seed dispersion")
        L, K, a = (float(f.get(x, np.nan)) for x in ("L_int", "K", "alpha"))
        cs = float(f.get("c_star", np.nan))
        hi = max(float(c.max()), cs if np.isfinite(cs) else 0.0) * 1.3
        if all(np.isfinite(v) for v in (L, K, a)):
            grid = np.geomspace(max(float(c.min()) * 0.8, 1.0), hi, 80)
            ax.plot(grid, L + K * grid ** (-a), color="black", lw=1.2, label="L_int + K c^-alpha")
            if L > 0:
                ax.axhline(L, color="black", lw=0.8, ls=":", label="L_int")
        ax.axhline(tau2, color=REGIME_COLORS["Noise-Dominant"], lw=0.8, ls="--", label="tau^2")
        if np.isfinite(cs):
            ax.axvline(cs, color="#9467bd", lw=0.8, ls="-.", label="c*")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # The envelope can shoot up by decades at small c (alpha up to 5): frame the data.
        ref = np.concatenate([U[pos], [tau2]] + ([[L]] if np.isfinite(L) and L > 0 else []))
        ax.set_ylim(float(ref.min()) / 3, float(ref.max()) * 3)
        ax.set_xlim(max(float(c.min()) * 0.7, 0.5), hi)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(numticks=4))
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{n}\n{reg}", fontsize=7)
        ax.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=5, loc="upper right")
    fig.supxlabel("probe depth c (steps)", fontsize=8)
    fig.supylabel("U(c) (variance)", fontsize=8)
    fig.subplots_adjust(
        left=0.08, right=0.98, bottom=0.1 if nrow > 1 else 0.2, top=0.92 if nrow > 1 else 0.8, hspace=0.7, wspace=0.35
    )
    return _save(fig, path, tight=False)


def _spend_per_round(spend: Sequence[Mapping[str, Any]], key_of: Any) -> tuple[list[int], dict[str, np.ndarray]]:
    """(rounds, key -> probe spend per round), the key being key_of(candidate id)."""
    rounds = sorted({int(r["round"]) for r in spend})
    at = {rd: k for k, rd in enumerate(rounds)}
    per: dict[str, np.ndarray] = {}
    for r in spend:
        arr = per.setdefault(key_of(str(r["candidate"])), np.zeros(len(rounds)))
        arr[at[int(r["round"])]] += float(r["cost_s"]) if _finite(r["cost_s"]) else 0.0
    return rounds, per


def spend_plot(spend: Sequence[Mapping[str, Any]], budget: float | None, path: Path, top: int = 8) -> Path:
    """Cumulative probe spend by round, stacked by candidate (top spenders, the rest pooled),
    and against wall-clock time when the spend table says when each probe ended."""
    has_wall = bool(spend) and all(_finite(r.get("time_s")) for r in spend)
    fig = Figure(figsize=(11 if has_wall else 7.5, 4.2))
    ax = fig.add_subplot(1, 2 if has_wall else 1, 1)
    if not spend:
        ax.text(0.5, 0.5, "no probe has finished yet", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    rounds, per = _spend_per_round(spend, lambda c: c)
    totals = sorted(per, key=lambda c: (-per[c].sum(), c))
    shown = totals[:top]
    layers = [np.cumsum(per[c]) for c in shown]
    labels = list(shown)
    rest = [c for c in totals if c not in shown]
    if rest:
        layers.append(np.cumsum(np.sum([per[c] for c in rest], axis=0)))
        labels.append(f"{len(rest)} others")
    ax.stackplot(rounds, *layers, labels=labels, alpha=0.85, step="post")
    if budget is not None:
        ax.axhline(budget, color="black", ls="--", lw=1, label="probe budget")
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative probe spend (device-s)")
    ax.set_title("Where the probe budget went")
    ax.legend(fontsize=6, loc="upper left")
    if has_wall:
        ax2 = fig.add_subplot(1, 2, 2)
        w = np.array([float(r["time_s"]) for r in spend])
        s = np.array([float(r["spent_s"]) for r in spend])
        o = np.argsort(w, kind="stable")
        w = w - w.min()
        ax2.step(w[o], s[o], where="post", color="#1f77b4")
        if budget is not None:
            ax2.axhline(budget, color="black", ls="--", lw=1)
        ax2.set_xlabel("wall-clock time since the first probe ended (s)")
        ax2.set_ylabel("cumulative probe spend (device-s)")
        ax2.set_title("Spend over wall time")
    fig.tight_layout()
    return _save(fig, path)


def contender_plot(
    spend: Sequence[Mapping[str, Any]], candidates: Sequence[Mapping[str, Any]], path: Path, contention: float = 0.01
) -> Path:
    """Probe spend per round, split into each task's contenders (P(best in task) >= contention
    at the end) and the candidates that ended out of contention: where the budget moved."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    p_best = {str(r["candidate"]): _num(r.get("p_best")) for r in candidates}
    task = {str(r["candidate"]): str(r.get("task") or r.get("group") or "") for r in candidates}
    if not spend or not any(np.isfinite(v) for v in p_best.values()):
        ax.text(0.5, 0.5, "no P(best) yet (objective 'prediction' or no probe finished)", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)

    def layer(c: str) -> str:
        pb = p_best.get(c, float("nan"))
        return f"{task.get(c, '?')}: contenders" if np.isfinite(pb) and pb >= contention else "out of contention"

    rounds, layers = _spend_per_round(spend, layer)
    keys = sorted(k for k in layers if k != "out of contention") + (
        ["out of contention"] if "out of contention" in layers else []
    )
    colors = [f"C{k % 10}" for k in range(len(keys))]
    if keys and keys[-1] == "out of contention":
        colors[-1] = "#bbbbbb"
    ax.stackplot(rounds, *[layers[k] for k in keys], labels=keys, colors=colors, alpha=0.9, step="post")
    ax.set_xlabel("round")
    ax.set_ylabel("probe spend in the round (device-s)")
    ax.set_title(f"How the budget moved between contenders (P(best) >= {contention:.0%} at the end)")
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def savings_plot(totals: Mapping[str, Any], path: Path) -> Path:
    """Running everything vs the plan (recommended full runs + the probes that chose them +
    the undecided candidates' full runs, which the plan has not saved)."""
    allc = float(totals.get("all_full_cost_s") or 0.0)
    rec = float(totals.get("recommended_full_cost_s") or 0.0)
    probe = float(totals.get("probe_spend_s") or 0.0)
    undecided = float(totals.get("undecided_full_cost_s") or 0.0)
    fig = Figure(figsize=(7.5, 2.6))
    ax = fig.add_subplot()
    ax.barh([1], [allc], color="#7f7f7f", label="every candidate's full fine-tune")
    ax.barh([0], [rec], color="#2ca02c", label="recommended full runs")
    ax.barh([0], [probe], left=[rec], color="#ff7f0e", label="probes")
    if undecided > 0:
        ax.barh([0], [undecided], left=[rec + probe], color="#c7c7c7", hatch="//", label="undecided (probe more)")
    budget = totals.get("full_finetune_budget_s")
    if _finite(budget):
        ax.axvline(float(budget), color="black", ls="--", lw=1, label="full fine-tune budget")
    ax.set_yticks([0, 1], ["plan", "run everything"])
    ax.set_xlabel("device-seconds")
    saving = float(totals.get("saving_s") or 0.0)
    pct = f" ({saving / allc:.0%})" if allc > 0 else ""
    ax.set_title(f"Saving: {saving:,.0f} device-s{pct}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def curves_for(
    names: Sequence[str], store_curves: Mapping[str, CandidateCurves]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from prehoc_ray.report.run_data import u_curve

    return {n: u_curve(store_curves[n]) for n in names if n in store_curves}
