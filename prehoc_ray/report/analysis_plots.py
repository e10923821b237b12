"""Figures of the offline analysis: the (L_int, alpha) phase diagram and the U(c) decay fits.

Figures are built on matplotlib's object API with an explicit Agg canvas: no pyplot state, no
display needed, and the user's interactive backend is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from prehoc_ray.core.analysis import AnalysisSettings, Unit
from prehoc_ray.core.decay import ALPHA_MAX_THEORY
from prehoc_ray.types import Regime

MAX_DECAY_PANELS = 12

REGIME_COLORS = {
    Regime.STATIC_SUFFICIENT: "#2ca02c",
    Regime.DYNAMIC_CRITICAL: "#1f77b4",
    Regime.NOISE_DOMINANT: "#d62728",
    Regime.UNDETERMINED: "#7f7f7f",
}
# Pale versions for the background regions of the phase diagram.
REGION_COLORS = {
    Regime.STATIC_SUFFICIENT: "#c7e9c0",
    Regime.DYNAMIC_CRITICAL: "#c6dbef",
    Regime.NOISE_DOMINANT: "#f8dede",
}
KIND_MARKERS = {"seeds": "o", "population": "s", "seeds-pooled": "D"}
KIND_LABELS = {
    "seeds": "candidate (seed dispersion)",
    "population": "group (population risk)",
    "seeds-pooled": "family (pooled seeds)",
}


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)


def _is_group_level(u: Unit) -> bool:
    return u.kind != "seeds"


def static_share(
    units: Sequence[Unit],
    gamma: float,
    settings: AnalysisSettings,
    horizon: float,
    L_grid: np.ndarray,
    alphas: np.ndarray,
    max_units: int = 300,
) -> np.ndarray | None:
    """Share of the units that would be Static-Sufficient at each (L_int, alpha) of the grid.

    Whether probing pays depends on K, L(0), the cost and the horizon as well as on (L_int,
    alpha), so the plane has no single Static-Sufficient boundary. For each unit we keep its
    own L(0), first depth c_min and optimisation variance there, V0 = K c_min^-alpha, move it
    to every (L_int, alpha) of the grid (K = V0 c_min^alpha) and ask the regime rule: is
    L(0) <= tau^2 or J(0) <= J(c*)? The share over units is what the background shows.
    Returns an array of shape (alphas, L_grid), or None when no unit has the quantities needed.
    """
    ok = [u for u in units if u.fit.ok and np.isfinite(u.L0) and np.isfinite(u.fit.c_min)]
    if not ok:
        return None
    if len(ok) > max_units:  # an even subsample keeps memory bounded; the share barely moves
        ok = [ok[i] for i in np.linspace(0, len(ok) - 1, max_units).round().astype(int)]
    tau2 = settings.tolerance**2
    lam = settings.cost_per_step
    L0 = np.array([u.L0 for u in ok])[:, None]
    c_min = np.array([max(u.fit.c_min, 1.0) for u in ok])[:, None]
    V0 = np.array([u.fit.K * max(u.fit.c_min, 1.0) ** (-u.fit.alpha) for u in ok])[:, None]
    a = alphas[None, :]
    K = V0 * c_min**a
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        c_star = np.clip((a * K / (gamma * lam)) ** (1.0 / (a + 1.0)), c_min, np.maximum(horizon, c_min))
        # J(0) <= J(c*)  <=>  L_int >= L(0) - K c*^-alpha - gamma lambda c*
        bound = L0 - K * c_star ** (-a) - gamma * lam * c_star  # (units, alphas)
    static = (L0[:, :, None] <= tau2) | (L_grid[None, None, :] >= bound[:, :, None])
    return static.mean(axis=0)


def phase_diagram(units: Sequence[Unit], gamma: float, settings: AnalysisSettings, horizon: float, path: Path) -> None:
    """Units on the (L_int, alpha) plane, coloured by their regime, over the regime regions."""
    tau2 = settings.tolerance**2
    fitted = [u for u in units if u.fit.ok]
    fig = Figure(figsize=(9.0, 6.4))
    ax = fig.add_subplot(1, 1, 1)
    L = np.array([u.fit.L_int for u in fitted]) if fitted else np.empty(0)
    A = np.array([u.fit.alpha for u in fitted]) if fitted else np.empty(0)
    pos = L[L > 0]
    x_lo = min(float(pos.min()) if pos.size else tau2, tau2) / 10
    x_lo = max(x_lo, tau2 * 1e-4)
    x_hi = max(float(L.max()) if L.size else tau2, tau2) * 10
    y_lo = min(float(A.min()) if A.size else 0.1, 0.05) / 1.5
    y_hi = max(float(A.max()) if A.size else 1.0, 2 * ALPHA_MAX_THEORY) * 1.5

    # Background: Noise-Dominant right of tau^2; left of it, blue (probing pays) to green
    # (Static-Sufficient) by the share of this portfolio's units that would be Static-Sufficient.
    ax.axvspan(tau2, x_hi, color=REGION_COLORS[Regime.NOISE_DOMINANT], zorder=0, lw=0)
    L_grid = np.geomspace(x_lo, tau2, 160)
    alphas = np.geomspace(y_lo, y_hi, 160)
    share = static_share(fitted, gamma, settings, horizon, L_grid, alphas)
    contour = False
    cmap = LinearSegmentedColormap.from_list(
        "dc_ss", [REGION_COLORS[Regime.DYNAMIC_CRITICAL], REGION_COLORS[Regime.STATIC_SUFFICIENT]]
    )
    if share is not None:
        mesh = ax.pcolormesh(
            L_grid, alphas, share, cmap=cmap, vmin=0, vmax=1, shading="auto", zorder=0, rasterized=True
        )
        contour = bool(share.min() < 0.5 < share.max())
        if contour:
            ax.contour(
                L_grid,
                alphas,
                share,
                levels=[0.5],
                colors=[REGIME_COLORS[Regime.STATIC_SUFFICIENT]],
                linewidths=1.5,
                linestyles="--",
                zorder=1,
            )
        cb = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
        cb.set_label("share of units Static-Sufficient at this (L_int, alpha)", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    else:
        ax.axvspan(x_lo, tau2, color=REGION_COLORS[Regime.DYNAMIC_CRITICAL], zorder=0, lw=0)
    ax.axvline(tau2, color=REGIME_COLORS[Regime.NOISE_DOMINANT], lw=1.5, zorder=1)
    ax.axhline(ALPHA_MAX_THEORY, color="0.4", lw=0.8, ls=":", zorder=1)
    ax.text(
        x_lo * 1.15,
        ALPHA_MAX_THEORY * 1.05,
        "alpha = 1 (theory bound; above: early transient)",
        fontsize=7,
        color="0.35",
        va="bottom",
    )

    # Units: colour = their own regime, marker = kind; intervals for group-level units
    # (and for candidates while few enough to stay readable).
    n_cand = sum(1 for u in fitted if not _is_group_level(u))
    for u in sorted(fitted, key=_is_group_level):
        f = u.fit
        x = min(max(f.L_int, x_lo), x_hi)
        y = min(max(f.alpha, y_lo), y_hi)
        big = _is_group_level(u)
        color = REGIME_COLORS[u.regime]
        if big or n_cand <= 40:
            xerr = (
                [[max(x - max(f.L_int_lo, x_lo), 0.0)], [max(min(f.L_int_hi, x_hi) - x, 0.0)]]
                if np.isfinite(f.L_int_lo)
                else None
            )
            yerr = (
                [[max(y - max(f.alpha_lo, y_lo), 0.0)], [max(min(f.alpha_hi, y_hi) - y, 0.0)]]
                if np.isfinite(f.alpha_lo) and f.alpha_hi > f.alpha_lo
                else None
            )
            if xerr is not None or yerr is not None:
                ax.errorbar(
                    [x],
                    [y],
                    xerr=xerr,
                    yerr=yerr,
                    fmt="none",
                    ecolor=color,
                    alpha=0.45 if not big else 0.8,
                    lw=0.8,
                    zorder=2,
                )
        ax.scatter(
            [x],
            [y],
            marker=KIND_MARKERS.get(u.kind, "o"),
            s=70 if big else 18,
            color=color,
            edgecolors="black" if big else "none",
            linewidths=0.8,
            alpha=1.0 if big else 0.7,
            zorder=3 if big else 2,
        )
        if big:
            ax.annotate(u.name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("L_int: intrinsic floor of the risk (variance of the final, metric units squared)")
    ax.set_ylabel("alpha: information revelation rate")
    ax.set_title(f"Phase diagram ({len(fitted)} fitted units; tolerance tau={settings.tolerance:g})", fontsize=10)

    handles = [
        Patch(facecolor=REGIME_COLORS[r], label=r.value)
        for r in (Regime.STATIC_SUFFICIENT, Regime.DYNAMIC_CRITICAL, Regime.NOISE_DOMINANT)
    ]
    kinds = sorted({u.kind for u in fitted})
    handles += [
        Line2D([], [], marker=KIND_MARKERS.get(k, "o"), ls="none", color="0.3", label=KIND_LABELS.get(k, k))
        for k in kinds
    ]
    handles.append(
        Line2D(
            [],
            [],
            color=REGIME_COLORS[Regime.NOISE_DOMINANT],
            lw=1.5,
            label=f"L_int = tau^2 = {tau2:.3g} (Noise-Dominant right of it)",
        )
    )
    if contour:
        handles.append(
            Line2D(
                [],
                [],
                color=REGIME_COLORS[Regime.STATIC_SUFFICIENT],
                lw=1.5,
                ls="--",
                label="J(0) = J(c*) for half of the units",
            )
        )
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.85)
    fig.text(
        0.01,
        0.005,
        "Marker: each unit's own regime. Left of tau^2, background: share of units for which that (L_int, alpha) "
        "would be Static-Sufficient (green) rather than worth probing (blue).",
        fontsize=7,
        color="0.3",
    )
    if any(u.fit.L_int < x_lo for u in fitted):
        ax.text(x_lo * 1.15, y_lo * 1.1, f"floors below {x_lo:.2g} drawn on the left edge", fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    _save(fig, path)


def _informativeness(u: Unit) -> tuple[float, float]:
    U = u.U[np.isfinite(u.U) & (u.U > 0)]
    span = float(np.log(U.max() / U.min())) if U.size >= 2 else 0.0
    return (float(U.size), span)


def select_decay_units(units: Sequence[Unit], limit: int = MAX_DECAY_PANELS) -> list[Unit]:
    """Up to `limit` units worth a panel: group-level units first, then candidates spread over
    the regimes (round-robin), the ones with the most depths and the widest decay first."""
    usable = [u for u in units if np.sum(np.isfinite(u.U) & (u.U > 0)) >= 2]
    chosen = sorted([u for u in usable if _is_group_level(u)], key=lambda u: (u.kind, u.name))[:limit]
    order = (Regime.DYNAMIC_CRITICAL, Regime.STATIC_SUFFICIENT, Regime.NOISE_DOMINANT, Regime.UNDETERMINED)
    queues = {
        r: sorted([u for u in usable if not _is_group_level(u) and u.regime is r], key=_informativeness, reverse=True)
        for r in order
    }
    while len(chosen) < limit and any(queues.values()):
        for r in order:
            if queues[r] and len(chosen) < limit:
                chosen.append(queues[r].pop(0))
    return chosen


def decay_plot(units: Sequence[Unit], path: Path, limit: int = MAX_DECAY_PANELS) -> list[Unit]:
    """U(c) with the fitted envelope L_int + K c^-alpha, log-log, one panel per unit."""
    chosen = select_decay_units(units, limit)
    if not chosen:
        fig = Figure(figsize=(6, 2.5))
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "No unit has U(c) at two or more depths:\nno decay to show (see report.md).",
            ha="center",
            va="center",
        )
        _save(fig, path)
        return chosen
    ncols = min(4, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.8 * nrows))
    for k, u in enumerate(chosen):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        f = u.fit
        keep = np.isfinite(u.U) & (u.U > 0)
        color = REGIME_COLORS[u.regime]
        ax.scatter(u.depths[keep], u.U[keep], s=16, color="black", zorder=3, label="U(c) measured")
        c_hi = float(u.depths[keep].max())
        if f.ok:
            if np.isfinite(u.c_star):
                c_hi = max(c_hi, float(u.c_star))
            c = np.geomspace(max(float(u.depths[keep].min()) / 1.5, 1e-9), c_hi * 1.5, 200)
            ax.plot(c, f.risk(c), color=color, lw=1.6, label="L_int + K c^-alpha")
            if f.L_int > 0:
                ax.axhline(f.L_int, color=color, lw=0.9, ls="--", label="L_int")
            if np.isfinite(u.c_star):
                ax.axvline(u.c_star, color="0.4", lw=0.9, ls=":", label="c*")
            text = f"alpha={f.alpha:.2g}  L_int={f.L_int:.2g}"
        else:
            text = "no fit: " + (", ".join(f.diagnostics) or "too few points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        Uk = u.U[keep]
        y_lo = float(Uk.min())
        if f.ok and f.L_int > 0:
            y_lo = min(y_lo, max(f.L_int, y_lo / 30))  # a floor far below the data would squash it
        ax.set_ylim(y_lo / 1.6, float(Uk.max()) * 1.6)
        name = u.name if len(u.name) <= 34 else u.name[:15] + "..." + u.name[-16:]
        ax.set_title(f"{name}\n{u.regime.value}", fontsize=8, color=color)
        ax.text(
            0.03,
            0.04,
            text + (f"\n[{', '.join(f.diagnostics)}]" if f.diagnostics and f.ok else ""),
            transform=ax.transAxes,
            fontsize=6.5,
            color="0.2",
        )
        ax.tick_params(labelsize=7)
        # Short axes (under a decade) would label every minor tick on top of each other:
        # label 1, 2 and 5 of each decade instead.
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=7))
            axis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        if k % ncols == 0:
            ax.set_ylabel("U(c)", fontsize=8)
        if k >= (nrows - 1) * ncols:
            ax.set_xlabel("probe depth c (steps)", fontsize=8)
        if k == 0:
            ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    _save(fig, path)
    return chosen
