"""The run report: self-contained HTML (checked in headless Chromium), Markdown, PNGs, and the
`prehoc-ray report DIR` command on finished and interrupted runs."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prehoc_ray.cli import app
from prehoc_ray.cli import report as _report  # noqa: F401  (registers commands)
from prehoc_ray.cli import submit as _submit  # noqa: F401
from prehoc_ray.cli import validate as _validate  # noqa: F401
from prehoc_ray.plan.simrun import simulated_spec_dict, write_simulated_run
from prehoc_ray.report.finish import write_outputs
from prehoc_ray.report.run_report import PLAN_TABLE_COLUMNS

PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    d = tmp_path_factory.mktemp("finished")
    job = write_simulated_run(d, simulated_spec_dict(baselines={"glue-like": 0.62}, full_finetune_seconds=800))
    out = write_outputs(d, job)
    assert out.report_error is None
    return d, out


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupted")
    write_simulated_run(d, simulated_spec_dict(), interrupt_after_rounds=2)
    assert not (d / "candidates.parquet").exists()
    return d


def test_html_is_self_contained(finished):
    d, out = finished
    html = (d / "report.html").read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html)
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for name in ("phase diagram", "decay curves", "probe spend", "contenders", "savings"):
        assert name.split()[0] in html.lower()
    rows = re.findall(r'<tr class="(run|skip|probe-more)">', html)
    assert len(rows) == len(out.rows)
    assert "Saving" in html or "saving" in html


def test_markdown_and_pngs(finished):
    d, out = finished
    md = (d / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5  # phase, decay, spend, contenders, savings
    for link in links:
        assert (d / link).read_bytes()[:8] == PNG
    assert "| candidate | task | model | regime | decision |" in md
    assert md.count("\n| ") >= len(out.rows) + 2
    for r in out.rows:
        assert r["candidate"] in md


def test_interrupted_run_report(interrupted):
    r = runner.invoke(app, ["report", str(interrupted)])
    assert r.exit_code == 0, r.output
    assert "run incomplete" in r.output
    html = (interrupted / "report.html").read_text()
    assert 'id="incomplete"' in html and "no candidates.parquet" in html
    assert 'id="provisional-table"' in html and 'id="plan-table"' not in html
    assert "1 probe(s) started and never finished" in html
    md = (interrupted / "report.md").read_text()
    assert "Incomplete run" in md
    for name in ("phase_diagram", "decay_curves", "probe_spend"):
        assert (interrupted / "plots" / f"{name}.png").read_bytes()[:8] == PNG
    assert not (interrupted / "plots" / "savings.png").exists()
    assert not (interrupted / "plan.json").exists()


def test_report_command_rebuilds_and_replans(finished, tmp_path):
    d, _ = finished
    work = tmp_path / "run"
    shutil.copytree(d, work)
    for f in ("report.html", "report.md", "plan.json", "plan.parquet"):
        (work / f).unlink()
    shutil.rmtree(work / "plots")
    r = runner.invoke(app, ["report", str(work)])
    assert r.exit_code == 0, r.output
    html = (work / "report.html").read_text()
    assert 'id="plan-table"' in html  # plan recomputed in memory from candidates + job.yaml
    assert not (work / "plan.json").exists()
    r = runner.invoke(app, ["report", str(work), "--replan"])
    assert r.exit_code == 0, r.output
    assert json.loads((work / "plan.json").read_text())["totals"]["n_candidates"] == 12


def test_report_command_bad_input(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not a directory" in r.output
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not a run directory" in r.output
    (tmp_path / "points").mkdir()
    r = runner.invoke(app, ["report", str(tmp_path), "--replan"])
    assert r.exit_code == 2 and "job spec not found" in r.output


# ----- headless Chromium ---------------------------------------------------------------------

PROBE = """<pre id="probe-result"></pre><script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {id: i.id, w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}; });
  var t = document.getElementById("plan-table");
  document.getElementById("probe-result").textContent = JSON.stringify({
    images: imgs, planRows: t ? t.tBodies[0].rows.length : -1,
    planWidth: t ? t.getBoundingClientRect().width : 0,
    cells: t ? t.tBodies[0].rows[0].cells.length : 0});
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (apt-get install -y chromium)")


def _render(html_path: Path, tmp_path: Path) -> dict:
    """Open a copy of the page (plus a probe script) in headless Chromium; return what it saw."""
    page = tmp_path / "page.html"
    page.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe-result">([^<]*)</pre>', r.stdout)
    assert m and m.group(1), f"no probe result; chromium rc={r.returncode} stderr tail: {r.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"'))


@pytest.mark.slow
def test_report_renders_in_headless_chromium(finished, tmp_path):
    d, out = finished
    seen = _render(d / "report.html", tmp_path)
    assert seen["planRows"] == len(out.rows)
    assert seen["cells"] == len(PLAN_TABLE_COLUMNS) and seen["planWidth"] > 300
    assert {i["id"] for i in seen["images"]} == {"img-savings", "img-phase", "img-decay", "img-spend", "img-contenders"}
    for img in seen["images"]:
        assert img["w"] > 100 and img["h"] > 100 and img["shown"] > 100, img


@pytest.mark.slow
def test_interrupted_report_renders_in_headless_chromium(interrupted, tmp_path):
    from prehoc_ray.report.run_report import write_report

    write_report(interrupted)
    seen = _render(interrupted / "report.html", tmp_path)
    assert seen["planRows"] == -1
    assert len(seen["images"]) == 3 and all(i["w"] > 100 for i in seen["images"])
