"""report.md of `prehoc-ray analyze`: settings, regimes, prediction quality, units, figures.

Written for the person who has to decide which fine-tunes to run: every number comes with
what it means, and the diagnostics are spelled out instead of left as codes.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prehoc_ray.core.analysis import AnalysisResult, Unit
from prehoc_ray.core.decay import DIAGNOSTIC_HELP
from prehoc_ray.report.analysis_plots import decay_plot, phase_diagram
from prehoc_ray.report.analysis_scoring import score_predictions
from prehoc_ray.types import Regime

MAX_TABLE_ROWS = 40
PHASE_FILE = "phase_diagram.png"
DECAY_FILE = "decay.png"
REPORT_FILE = "report.md"


@dataclass(frozen=True)
class InputSummary:
    """What was read, for the report's first lines."""

    source: str
    rows: int
    rows_used: int
    candidates: int
    groups: int
    seeds_max: int
    finals_known: int
    static_columns: tuple[str, ...]
    depth: float | None
    horizon: float | None
    mode: str


def _g(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return "-"
    return f"{x:.{digits}g}"


def _interval(v: float, lo: float, hi: float) -> str:
    if not np.isfinite(lo) or not np.isfinite(hi):
        return _g(v)
    return f"{_g(v)} [{_g(lo, 2)}, {_g(hi, 2)}]"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]~])")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _md_text(value: Any) -> str:
    """A name read from the user's input (candidate id, group, file, column) as Markdown text:
    on one line, HTML escaped as report.html escapes it, and Markdown's emphasis, link and
    code characters backslash-escaped, so an id reads as written and cannot add lines, tags or
    links. `|` is left to `_md_table`, which escapes it in cells."""
    one_line = _LINE_BREAKS.sub(" ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return lines


def _unit_order(result: AnalysisResult) -> list[int]:
    """Group-level units first, then candidates by regime and name."""
    rank = {Regime.DYNAMIC_CRITICAL: 0, Regime.STATIC_SUFFICIENT: 1, Regime.NOISE_DOMINANT: 2, Regime.UNDETERMINED: 3}
    return sorted(
        range(len(result.units)),
        key=lambda i: (result.units[i].kind == "seeds", rank[result.units[i].regime], result.units[i].name),
    )


def _draw_figures(result: AnalysisResult, out_dir: Path) -> tuple[float, list[Unit]]:
    """Write both PNGs; returns the reference horizon (also shown in Settings) and the units drawn in decay.png."""
    horizons = result.predictions["horizon"]
    horizon_ref = float(np.nanmedian(horizons)) if np.isfinite(horizons).any() else 1.0
    phase_diagram(result.units, result.gamma, result.settings, horizon_ref, out_dir / PHASE_FILE)
    shown = decay_plot(result.units, out_dir / DECAY_FILE)
    return horizon_ref, shown


def _header_section(result: AnalysisResult, summary: InputSummary, horizon_ref: float) -> list[str]:
    """Title, what was read, and the Settings table."""
    s = result.settings
    depth_txt = "everything observed" if summary.depth is None else f"steps <= {summary.depth:g}"
    lines = [
        "# prehoc-ray analysis",
        "",
        f"Input {_md_text(summary.source)}: {summary.rows} rows ({summary.rows_used} at the analysed depth), "
        f"{summary.candidates} candidates in {summary.groups} group(s), up to {summary.seeds_max} seed(s) per candidate, "
        f"{summary.finals_known} candidates with a known final, static features: "
        f"{', '.join(_md_text(c) for c in summary.static_columns) if summary.static_columns else 'none'}.",
        "",
        "## Settings",
        "",
    ]
    gamma_src = (
        "given"
        if s.gamma is not None
        else "default: tau^2 / (lambda x median horizon), i.e. a probe as long as the full run is worth tau^2"
    )
    lines += _md_table(
        ["setting", "value", "meaning"],
        [
            ["depth", depth_txt, "what the predictor sees (--depth)"],
            [
                "horizon",
                _g(summary.horizon) if summary.horizon is not None else f"per candidate (median {_g(horizon_ref)})",
                "full-training length the final refers to",
            ],
            ["mode", summary.mode, "whether a larger metric is better (ranks in predictions.parquet)"],
            ["level", _g(s.level), "coverage the intervals aim at"],
            [
                "tolerance tau",
                _g(s.tolerance),
                "prediction std you can live with, in metric units; regime thresholds use tau^2",
            ],
            ["cost per step lambda", _g(s.cost_per_step), "cost of one probe step"],
            ["gamma", _g(result.gamma), f"price of risk per unit cost ({gamma_src})"],
            [
                "folds / bootstrap / seed",
                f"{s.n_folds} / {s.n_boot} / {s.seed}",
                "cross-fitting folds, bootstrap replicates of the decay fit, random seed",
            ],
        ],
    )
    return lines + [""]


_REGIME_ADVICE: tuple[tuple[Regime, str], ...] = (
    (
        Regime.STATIC_SUFFICIENT,
        "static signals (or a very short probe) already predict within tolerance: do not buy probes",
    ),
    (Regime.DYNAMIC_CRITICAL, "probing to c* pays for itself: probe, then decide"),
    (
        Regime.NOISE_DOMINANT,
        "the intrinsic floor exceeds tau^2: no probe makes the prediction precise; expect wide intervals",
    ),
    (
        Regime.UNDETERMINED,
        "too little data for a decay fit (one seed and no group of completed runs, or < 3 depths)",
    ),
)


def _regimes_section(result: AnalysisResult) -> list[str]:
    """How many candidates and units fell in each regime, and what to do about each."""
    cand_counts = Counter(str(r) for r in result.predictions["regime"])
    unit_counts = Counter(u.regime.value for u in result.units)
    lines = ["## Regimes", ""]
    lines += _md_table(
        ["regime", "candidates", "units", "what to do"],
        [
            [regime.value, str(cand_counts.get(regime.value, 0)), str(unit_counts.get(regime.value, 0)), advice]
            for regime, advice in _REGIME_ADVICE
        ],
    )
    lines += [
        "",
        "A candidate's regime is that of the unit it belongs to (its own seeds if it has two or more, else its group).",
        "",
    ]
    return lines


def _prediction_quality_section(result: AnalysisResult) -> list[str]:
    """Out-of-fold scores of the predictions against the naive last-observed baseline."""
    level = result.settings.level
    p = result.predictions
    # A candidate observed through its horizon is predicted by what it reached: scoring it
    # would score the data against itself.
    ahead = np.asarray(p["depth"], float) < np.asarray(p["horizon"], float)
    known = np.isfinite(np.asarray(p["final"], float))
    model, naive = score_predictions({k: np.asarray(v)[ahead] for k, v in p.items()})
    lines = ["## Prediction quality (out-of-fold)", ""]
    if model.n > 0:
        skipped = int((known & ~ahead).sum())
        lines += [
            f"Scored on the {model.n} candidates with a known final that were predicted before their horizon"
            + (
                f" ({skipped} observed through it are not scored: their prediction is what they reached)"
                if skipped
                else ""
            )
            + ". No candidate's own final was used for its own prediction (cross-fitting), so these are honest "
            "estimates for new candidates. The naive predictor is the last observed value (the group's mean final "
            "when nothing is observed).",
            "",
        ]
        lines += _md_table(
            ["predictor", "RMSE", "Spearman", f"coverage of {level:.0%} intervals", "mean interval width"],
            [
                ["prehoc-ray", _g(model.rmse), _g(model.spearman), _g(model.coverage), _g(model.mean_width)],
                ["naive (last observed)", _g(naive.rmse), _g(naive.spearman), "-", "-"],
            ],
        )
    elif known.any():
        lines += [
            "Every candidate with a known final was observed through its horizon, so its prediction is what it "
            "reached: nothing to score. Pass `--depth C` to score what would have been predicted after C steps."
        ]
    else:
        lines += ["No candidate has a known final: nothing to score against (add a `final` column to score)."]
    return lines + [""]


def _unit_row(u: Unit) -> list[str]:
    f = u.fit
    return [
        _md_text(u.name),
        u.kind,
        _interval(f.L_int, f.L_int_lo, f.L_int_hi),
        _interval(f.K, f.K_lo, f.K_hi),
        _interval(f.alpha, f.alpha_lo, f.alpha_hi),
        _g(u.L0),
        _g(u.c_star),
        u.regime.value,
        str(f.n_points),
        ", ".join(f.diagnostics) or "-",
    ]


def _units_section(result: AnalysisResult) -> list[str]:
    """The fitted units, at most MAX_TABLE_ROWS of them (the rest are in decomposition.parquet)."""
    lines = [
        "## Units",
        "",
        f"{len(result.units)} fitted units. `group:` units measure U(c) by population risk (cross-validated error of "
        "the predictor fed the first c steps, over the group's completed runs); `family:` units pool the seed "
        "dispersion of a group's candidates (their alpha is shared by the members); `candidate:` units use the "
        "dispersion across one candidate's seeds. Intervals in brackets are central "
        f"{result.settings.level:.0%} bootstrap intervals.",
        "",
    ]
    if result.units:
        order = _unit_order(result)
        rows = [_unit_row(result.units[i]) for i in order[:MAX_TABLE_ROWS]]
        lines += _md_table(["unit", "kind", "L_int", "K", "alpha", "L0", "c*", "regime", "n", "diagnostics"], rows)
        if len(order) > MAX_TABLE_ROWS:
            lines += ["", f"({len(order) - MAX_TABLE_ROWS} more units in decomposition.parquet.)"]
    else:
        lines += [
            "No unit could be fitted: U(c) needs two or more seeds per candidate, or a group with at least "
            "8 completed runs (a `final` column)."
        ]
    return lines + [""]


def _figures_section(result: AnalysisResult, n_shown: int) -> list[str]:
    """Both figures, each with how to read it."""
    tau = result.settings.tolerance
    return [
        "## Phase diagram",
        "",
        f"![phase diagram]({PHASE_FILE})",
        "",
        "How to read it: each marker is a unit placed at its intrinsic floor L_int (x) and revelation rate alpha (y), "
        "both on log scales, with its bootstrap intervals as whiskers; its colour is the regime it was given. "
        f"The solid red line is L_int = tau^2 = {_g(tau**2)}: to its right the floor alone exceeds the tolerance "
        "(Noise-Dominant; a unit is only called so when its whole interval lies right of the line, so a marker there "
        "may still be blue). Left of it, whether probing pays depends on a unit's own K and L(0) as well as on "
        "(L_int, alpha): the background shows, for each point of the plane, the share of this portfolio's units that "
        "would be Static-Sufficient there (green: L(0) <= tau^2 or J(0) <= J(c*), not probing is at least as good as "
        "probing to c*) rather than Dynamic-Critical (blue: probing to c* pays); the dashed green curve, when present, "
        "is where half of the units switch. A marker's colour can therefore differ from the region it sits in. "
        "Above the dotted line alpha = 1 the decay is faster than theory allows: an early transient.",
        "",
        "## Decay of the uncertainty",
        "",
        f"![decay fits]({DECAY_FILE})",
        "",
        f"How to read it: one panel per unit ({n_shown} shown, group-level units first, then candidates spread over the "
        "regimes, those with the most depths first). Dots are the measured uncertainty proxy U(c) at probe depth c, "
        "the line the fitted envelope L_int + K c^-alpha, the dashed line the floor L_int, the dotted line the "
        "budget-optimal depth c*. A straight descending line means no floor within reach; a line that flattens early "
        "means the floor dominates.",
        "",
    ]


def _diagnostics_section(result: AnalysisResult) -> list[str]:
    """Every diagnostic code spelled out, with how many units raised it (zero included)."""
    diag_counts = Counter(d for u in result.units for d in u.fit.diagnostics)
    lines = ["## Diagnostics", ""]
    lines += _md_table(
        ["diagnostic", "units", "meaning"],
        [[code, str(diag_counts.get(code, 0)), help_] for code, help_ in DIAGNOSTIC_HELP.items()],
    )
    return lines + [""]


def _files_section() -> list[str]:
    """What the tables written next to report.md hold."""
    return [
        "## Files",
        "",
        "- `predictions.parquet`: one row per candidate: candidate, group, depth, predicted_final, predicted_std, lower, "
        "upper, regime, final, last_observed, horizon, unit, rank (1 = best by --mode).",
        "- `decomposition.parquet`: one row per unit: L_int, K, alpha with _lo/_hi, L0, c_star, J0, J_star, regime, "
        "reason, n_points, diagnostics, and the measured depths and U.",
        "",
    ]


def _write_markdown(lines: list[str], out_dir: Path) -> Path:
    path = out_dir / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_report(result: AnalysisResult, out_dir: Path, summary: InputSummary) -> list[Path]:
    """Draw the figures and write report.md into `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    horizon_ref, shown = _draw_figures(result, out_dir)
    lines = [
        *_header_section(result, summary, horizon_ref),
        *_regimes_section(result),
        *_prediction_quality_section(result),
        *_units_section(result),
        *_figures_section(result, len(shown)),
        *_diagnostics_section(result),
        *_files_section(),
    ]
    return [out_dir / PHASE_FILE, out_dir / DECAY_FILE, _write_markdown(lines, out_dir)]
