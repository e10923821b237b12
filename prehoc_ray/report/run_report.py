"""The run report: report.html (self-contained) and report.md, with the plots as PNG files.

report.html inlines every image as a base64 data URI and carries its own CSS; it has no
script and no external reference, so it opens from disk in any browser, with no server.
report.md links the same PNGs under plots/. Built from a run directory alone (`prehoc-ray
report DIR`), so a finished run, an interrupted one and a copy on a laptop all work.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prehoc_ray.io.atomic import write_bytes_atomic
from prehoc_ray.report import run_plots
from prehoc_ray.report.run_data import RunData, load_run
from prehoc_ray.spec.job import JobSpec

PLOTS_DIR = "plots"
HTML_FILE = "report.html"
MD_FILE = "report.md"

PLAN_TABLE_COLUMNS = (
    ("candidate", "candidate"),
    ("task", "task"),
    ("model", "model"),
    ("regime", "regime"),
    ("decision", "decision"),
    ("predicted_final", "predicted"),
    ("predicted_std", "std"),
    ("predictor", "from"),
    ("lower", "lower"),
    ("upper", "upper"),
    ("p_beat", "P(beat)"),
    ("probe_steps", "probe steps"),
    ("probe_cost_s", "probe cost (s)"),
    ("full_cost_s", "full run (s)"),
    ("L_int", "L_int"),
    ("K", "K"),
    ("alpha", "alpha"),
    ("c_star", "c*"),
    ("reason", "reason"),
)
TRUTH_COLUMNS = (
    ("candidate", "candidate"),
    ("decision", "decision"),
    ("predicted_final", "predicted"),
    ("lower", "lower"),
    ("upper", "upper"),
    ("true_final", "recorded full fine-tune"),
    ("inside", "inside [lower, upper]"),
)
PROVISIONAL_COLUMNS = (
    ("candidate", "candidate"),
    ("seeds", "seeds"),
    ("probe_steps", "depth (all seeds)"),
    ("probes_finished", "probes finished"),
    ("probes_failed", "failed"),
    ("probes_open", "open"),
    ("probe_cost_s", "probe cost (s)"),
    ("last_mean", "last value (mean)"),
    ("last_sd", "across seeds (sd)"),
    ("L_int", "L_int (provisional)"),
    ("K", "K"),
    ("alpha", "alpha"),
)


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    plots: dict[str, Path] = field(default_factory=dict)
    complete: bool = True


def _fmt(v: Any, key: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        if key.endswith("_s"):
            return f"{v:,.1f}"
        if key in ("p_beat",):
            return f"{v:.2f}"
        if key in ("probe_steps", "seeds"):
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(v)


def _img_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _decision_map(data: RunData) -> dict[str, str]:
    return {str(r["candidate"]): str(r.get("decision", "")) for r in data.plan_rows or []}


def _decay_order(data: RunData) -> list[str]:
    rank = {"run": 0, "probe more": 1, "skip": 2}
    if data.plan_rows:
        rows = sorted(
            data.plan_rows,
            key=lambda r: (
                rank.get(str(r.get("decision")), 3),
                -(float(r.get("probe_cost_s") or 0.0) if _finite(r.get("probe_cost_s")) else 0.0),
                str(r["candidate"]),
            ),
        )
        return [str(r["candidate"]) for r in rows]
    rows = sorted(data.provisional, key=lambda r: (-float(r.get("probe_cost_s") or 0.0), str(r["candidate"])))
    return [str(r["candidate"]) for r in rows]


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def make_plots(data: RunData) -> dict[str, Path]:
    out_dir = data.run_dir / PLOTS_DIR
    fits = data.fits()
    decisions = _decision_map(data)
    seeds = data.spec.allocation.seeds if data.spec else 3
    c_min = float(data.spec.probe.eval_every) if data.spec else 10.0
    order = _decay_order(data)
    plots = {
        "phase": run_plots.phase_diagram(
            fits, decisions, data.tolerance, out_dir / "phase_diagram.png", seeds=seeds, c_min=c_min
        ),
        "decay": run_plots.decay_grid(
            run_plots.curves_for(order, data.curves), fits, order, data.tolerance, out_dir / "decay_curves.png"
        ),
        "spend": run_plots.spend_plot(
            data.spend, data.spec.budget.probe_seconds if data.spec else None, out_dir / "probe_spend.png"
        ),
    }
    if data.candidates:
        plots["contenders"] = run_plots.contender_plot(data.spend, data.candidates, out_dir / "contenders.png")
    if data.totals:
        plots["savings"] = run_plots.savings_plot(data.totals, out_dir / "savings.png")
    return plots


# ----- shared text ----------------------------------------------------------------------------


def _title(data: RunData) -> str:
    name = (
        data.spec.name
        if data.spec
        else (data.manifest.info.get("name") if data.manifest else None) or data.run_dir.name
    )
    return f"prehoc-ray run report: {name}"


def _facts(data: RunData) -> list[tuple[str, str]]:
    facts = [("run directory", str(data.run_dir)), ("status", data.status + ("" if data.complete else " (incomplete)"))]
    if data.spec is not None:
        facts += [
            ("spec hash", data.spec.spec_hash()),
            ("backend", data.spec.backend),
            ("candidates in spec", str(len(data.spec.candidate_specs()))),
            ("probe budget", f"{data.spec.budget.probe_seconds:,.0f} device-s"),
            (
                "full fine-tune budget",
                f"{data.spec.budget.full_finetune_seconds:,.0f} device-s"
                if data.spec.budget.full_finetune_seconds
                else "no cap",
            ),
            (
                "plan",
                f"mode {data.spec.plan.mode}, confidence {data.spec.plan.confidence:.2f}, baselines "
                + (", ".join(f"{k}={v:g}" for k, v in sorted(data.spec.plan.baselines.items())) or "none"),
            ),
        ]
    if data.manifest is not None:
        facts.append(("manifest updated", data.manifest.updated_at or data.manifest.created_at))
    facts.append(("probe spend source", data.spend_source or "none"))
    facts.append(("report generated", datetime.now(UTC).isoformat(timespec="seconds")))
    return facts


def _summary(data: RunData) -> list[tuple[str, str]]:
    t = data.totals or {}
    if not t:
        return []
    frac = t.get("saving_fraction")
    runs = t.get("runs") or {}
    return [
        (
            "recommended full runs",
            f"{t.get('n_run', 0)} ({', '.join(f'{k}: {v}' for k, v in sorted(runs.items())) or 'none'})",
        ),
        ("expected cost of the recommended full runs", f"{float(t.get('recommended_full_cost_s') or 0):,.0f} device-s"),
        ("cost of running every candidate's full fine-tune", f"{float(t.get('all_full_cost_s') or 0):,.0f} device-s"),
        ("probe spend", f"{float(t.get('probe_spend_s') or 0):,.0f} device-s"),
        (
            "one-time set-up of the probe workers (model, data, first engine build), not charged to the budget",
            f"{float(t.get('setup_s') or 0):,.0f} device-s",
        ),
        (
            "undecided (probe more): their full fine-tunes, not counted as saved",
            f"{float(t.get('undecided_full_cost_s') or 0):,.0f} device-s ({t.get('n_probe_more', 0)} candidate(s))",
        ),
        (
            "probe budget that would settle the undecided (the engine's next probes for them)",
            f"{float(t.get('probe_budget_to_settle_s') or 0):,.1f} device-s",
        ),
        (
            "saving",
            f"{float(t.get('saving_s') or 0):,.0f} device-s" + (f" ({float(frac):.0%})" if _finite(frac) else ""),
        ),
        ("decisions", f"{t.get('n_run', 0)} run, {t.get('n_probe_more', 0)} probe more, {t.get('n_skip', 0)} skip"),
    ]


def _incomplete_text(data: RunData) -> str:
    n_open = sum(v.get("started", 0) for v in data.probe_counts.values())
    return (
        f"This run is incomplete (status: {data.status}): there is no candidates.parquet, so there is no plan. "
        f"Below is what the result store holds: {len(data.curves)} candidate(s) with probe points, "
        f"{sum(v.get('finished', 0) for v in data.probe_counts.values())} finished probe(s), "
        f"{n_open} probe(s) started and never finished. Decay fits here are provisional (per candidate, "
        "without the family's shared alpha). Finish it with `prehoc-ray run <spec> --out <this directory> --resume` "
        "(or `prehoc-ray submit <spec> --out <this directory> --resume` on a cluster)."
    )


def _truth_intro(data: RunData) -> str:
    t = data.truth or {}
    if "error" in t:
        return f"The spec names recorded truth ({t.get('source')}), but it could not be read: {t['error']}"
    return (
        f"Recorded full fine-tunes of these candidates ({t.get('source')}), which the run never saw: "
        "how the plan's picks and intervals fared against what the full runs reached."
    )


# ----- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1300px;color:#222;padding:0 16px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.run td{background:#eaf7ea}tr.probe-more td{background:#fff6e0}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:10px;border-radius:4px}
.facts th{width:260px}img{max-width:100%;height:auto;border:1px solid #eee}.note{color:#555;font-size:12px}
"""


def _html_table(
    rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...], table_id: str, row_class: str | None = None
) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = []
    for r in rows:
        cls = str(r.get(row_class, "")).replace(" ", "-") if row_class else ""
        cells = []
        for key, _ in columns:
            v = r.get(key)
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            td = '<td class="num">' if num else "<td>"
            cells.append(f"{td}{html.escape(_fmt(v, key))}</td>")
        body.append(f'<tr class="{html.escape(cls)}">{"".join(cells)}</tr>')
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _kv_table(items: list[tuple[str, str]], table_id: str) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items)
    return f'<table class="facts" id="{table_id}">{rows}</table>'


def _img(plots: dict[str, Path], key: str, alt: str) -> str:
    p = plots.get(key)
    if p is None:
        return ""
    return f'<p><img id="img-{key}" alt="{html.escape(alt)}" src="{_img_data_uri(p)}"></p>'


def render_html(data: RunData, plots: dict[str, Path]) -> str:
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(_title(data))}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(_title(data))}</h1>",
    ]
    if not data.complete:
        parts.append(f'<p class="banner" id="incomplete">{html.escape(_incomplete_text(data))}</p>')
    parts.append(_kv_table(_facts(data), "facts"))
    if data.complete and data.plan_rows is not None:
        parts.append('<h2 id="summary">Plan and savings</h2>')
        parts.append(_kv_table(_summary(data), "totals"))
        parts.append(_img(plots, "savings", "savings: all full runs vs the plan"))
        parts.append("<h2>The plan: one decision per candidate</h2>")
        parts.append(
            '<p class="note">run: worth its full fine-tune; probe more: undecided and a probe would still pay, '
            "but the probe budget ran out; skip: the reason says why. Rules: prehoc_ray/core/decisions.py.</p>"
        )
        parts.append(_html_table(data.plan_rows, PLAN_TABLE_COLUMNS, "plan-table", row_class="decision"))
        if data.truth is not None:
            parts.append('<h2 id="truth">Against the recorded truth</h2>')
            parts.append(f'<p class="note">{html.escape(_truth_intro(data))}</p>')
            lines = data.truth.get("lines", [])
            parts.append('<ul id="truth-lines">' + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")
            if data.truth.get("candidates"):
                parts.append(_html_table(data.truth["candidates"], TRUTH_COLUMNS, "truth-table", row_class="decision"))
    elif data.complete:
        parts.append(
            '<p class="banner">candidates.parquet is here but job.yaml is not readable: no plan could be computed.</p>'
        )
    else:
        parts.append("<h2>What the store holds</h2>")
        parts.append(_html_table(data.provisional, PROVISIONAL_COLUMNS, "provisional-table"))
    parts.append("<h2>Phase diagram</h2>")
    parts.append(_img(plots, "phase", "phase diagram: candidates on (L_int, alpha) with the regime boundaries"))
    parts.append(
        '<p class="note">Noise-Dominant right of L_int = tau^2; the dash-dot line is where probing stops '
        "paying (J(c*) = J(0)) at the portfolio's median K, L(0), gamma and cost per step. Stars: run.</p>"
    )
    parts.append("<h2>Uncertainty decay per candidate</h2>")
    parts.append(_img(plots, "decay", "decay curves: U(c) by seed dispersion with the fitted envelope"))
    parts.append(
        '<p class="note">Points: U(c), the variance across seeds of the metric at depth c, rebuilt from the '
        "result store. Line: L_int + K c^-alpha"
        + (" as fitted by the engine." if data.complete else " (provisional fit).")
        + "</p>"
    )
    parts.append("<h2>Where the probe budget went</h2>")
    parts.append(_img(plots, "spend", "cumulative probe spend by round and candidate"))
    if "contenders" in plots:
        parts.append(_img(plots, "contenders", "probe spend per round: each task's contenders and the rest"))
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in data.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


# ----- Markdown -------------------------------------------------------------------------------


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> str:
    head = "| " + " | ".join(label for _, label in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_md_cell(_fmt(r.get(k), k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def render_markdown(data: RunData, plots: dict[str, Path]) -> str:
    rel = {k: p.relative_to(data.run_dir).as_posix() for k, p in plots.items()}
    out = [f"# {_title(data)}", ""]
    if not data.complete:
        out += [f"> **Incomplete run.** {_incomplete_text(data)}", ""]
    out += ["| | |", "|---|---|", *[f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in _facts(data)], ""]
    if data.complete and data.plan_rows is not None:
        out += [
            "## Plan and savings",
            "",
            "| | |",
            "|---|---|",
            *[f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in _summary(data)],
            "",
        ]
        if "savings" in rel:
            out += [f"![savings]({rel['savings']})", ""]
        out += ["## The plan: one decision per candidate", "", _md_table(data.plan_rows, PLAN_TABLE_COLUMNS), ""]
        if data.truth is not None:
            out += ["## Against the recorded truth", "", _truth_intro(data), ""]
            out += [*(f"- {x}" for x in data.truth.get("lines", [])), ""]
            if data.truth.get("candidates"):
                out += [_md_table(data.truth["candidates"], TRUTH_COLUMNS), ""]
    elif not data.complete:
        out += ["## What the store holds", "", _md_table(data.provisional, PROVISIONAL_COLUMNS), ""]
    out += [
        "## Phase diagram",
        "",
        f"![phase diagram]({rel['phase']})",
        "",
        "## Uncertainty decay per candidate",
        "",
        f"![decay curves]({rel['decay']})",
        "",
        "## Where the probe budget went",
        "",
        f"![probe spend]({rel['spend']})",
        "",
    ]
    if "contenders" in rel:
        out += [f"![contenders]({rel['contenders']})", ""]
    if data.notes:
        out += ["## Notes", "", *[f"- {n}" for n in data.notes], ""]
    return "\n".join(out)


def write_report(run_dir: str | Path, spec: JobSpec | None = None) -> ReportPaths:
    """Build plots/*.png, report.html and report.md in `run_dir` from what it holds."""
    data = load_run(run_dir, spec)
    plots = make_plots(data)
    html_path = data.run_dir / HTML_FILE
    md_path = data.run_dir / MD_FILE
    write_bytes_atomic(html_path, render_html(data, plots).encode("utf-8"))
    write_bytes_atomic(md_path, render_markdown(data, plots).encode("utf-8"))
    return ReportPaths(html_path, md_path, plots, data.complete)
