"""The end of a run: the portfolio plan (plan.parquet, plan.json), then the report.

The driver of `prehoc-ray run` calls `write_outputs(run_dir, spec)` once candidates.parquet,
spend.parquet and the result store are written.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import replace
from pathlib import Path

from prehoc_ray.plan.outputs import PlanOutputs, write_plan
from prehoc_ray.report.run_report import write_report
from prehoc_ray.spec.job import JobSpec

log = logging.getLogger(__name__)


def write_outputs(run_dir: str | Path, spec: JobSpec, *, report: bool = True) -> PlanOutputs:
    """plan.parquet + plan.json, then report.html + report.md + plots/*.png, in `run_dir`.

    Raises FileNotFoundError when candidates.parquet is missing. A failure while drawing the
    report does not lose the plan (hours of probes went into it): it is logged and returned
    in `report_error`, and `prehoc-ray report DIR` can rebuild the report later.
    """
    out = write_plan(run_dir, spec)
    if not report:
        return out
    try:
        rep = write_report(run_dir, spec=spec)
        return replace(out, report_html=rep.html, report_md=rep.markdown)
    except Exception as exc:  # see docstring
        log.error("prehoc-ray: the plan is written, the report failed: %s\n%s", exc, traceback.format_exc())
        return replace(out, report_error=f"{type(exc).__name__}: {exc}")
