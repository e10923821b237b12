"""Figures, report.md and scoring of the offline analysis, on hand-built units (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from prehoc_ray.core.analysis import AnalysisResult, AnalysisSettings, Unit
from prehoc_ray.core.decay import DIAGNOSTIC_HELP, DecayFit, fit_decay
from prehoc_ray.report.analysis_plots import decay_plot, phase_diagram, select_decay_units, static_share
from prehoc_ray.report.analysis_report import InputSummary, write_report
from prehoc_ray.report.analysis_scoring import naive_prediction, score, score_predictions
from prehoc_ray.types import Regime

PNG = b"\x89PNG\r\n\x1a\n"


def _unit(
    name: str, kind: str, L_int: float, K: float, alpha: float, regime: Regime, L0: float = 0.01, seed: int = 0
) -> Unit:
    rng = np.random.default_rng(seed)
    c = np.geomspace(10, 1000, 7)
    U = (L_int + K * c ** (-alpha)) * np.exp(0.1 * rng.standard_normal(c.size))
    fit = fit_decay(c, U, n_boot=30, rng=rng)
    return Unit(name, kind, c, U, fit, L0=L0, c_star=100.0, J0=L0, J_star=L0 / 2, regime=regime)


@pytest.fixture(scope="module")
def units() -> list[Unit]:
    out = [
        _unit("group:a", "population", 1e-5, 0.05, 0.7, Regime.DYNAMIC_CRITICAL),
        _unit("family:a", "seeds-pooled", 2e-5, 0.04, 0.6, Regime.DYNAMIC_CRITICAL),
        _unit("group:b", "population", 2e-3, 0.01, 0.5, Regime.NOISE_DOMINANT),
    ]
    regimes = [Regime.STATIC_SUFFICIENT, Regime.DYNAMIC_CRITICAL, Regime.NOISE_DOMINANT]
    for i in range(20):
        out.append(
            _unit(
                f"candidate:c{i:02d}",
                "seeds",
                10 ** (-6 + i / 5),
                0.02,
                0.4 + i / 30,
                regimes[i % 3],
                L0=1e-4 * (i + 1),
                seed=i + 1,
            )
        )
    # a unit without a fit (too few depths) must be tolerated everywhere
    out.append(
        Unit(
            "candidate:short",
            "seeds",
            np.array([10.0, 20.0]),
            np.array([0.01, 0.005]),
            DecayFit.empty(2, ("too_few_points",)),
        )
    )
    return out


def _result(units: list[Unit], n: int = 30) -> AnalysisResult:
    rng = np.random.default_rng(0)
    final = rng.normal(0.7, 0.05, n)
    pred = final + rng.normal(0, 0.02, n)
    std = np.full(n, 0.02)
    preds = {
        "candidate": np.array([f"c{i:02d}" for i in range(n)], dtype=object),
        "group": np.array(["a"] * (n // 2) + ["b"] * (n - n // 2), dtype=object),
        "depth": np.full(n, 100.0),
        "horizon": np.full(n, 1000.0),
        "predicted_final": pred,
        "predicted_std": std,
        "lower": pred - 1.645 * std,
        "upper": pred + 1.645 * std,
        "regime": np.array([Regime.DYNAMIC_CRITICAL.value] * n, dtype=object),
        "final": final,
        "last_observed": final + rng.normal(0, 0.04, n),
    }
    return AnalysisResult(preds, units, 4e-7, AnalysisSettings())


def test_decay_units_are_capped_and_group_level_first(units):
    chosen = select_decay_units(units)
    assert len(chosen) == 12
    assert {u.name for u in chosen[:3]} == {"family:a", "group:a", "group:b"}
    assert {u.regime for u in chosen[3:]} >= {Regime.STATIC_SUFFICIENT, Regime.DYNAMIC_CRITICAL, Regime.NOISE_DOMINANT}
    assert len(select_decay_units(units, limit=2)) == 2


def test_static_share_is_a_fraction_and_respects_L0(units):
    s = AnalysisSettings(tolerance=0.02)
    L = np.geomspace(1e-7, s.tolerance**2, 20)
    a = np.geomspace(0.05, 3, 15)
    share = static_share(units, 4e-7, s, 1000.0, L, a)
    assert share.shape == (15, 20) and share.min() >= 0 and share.max() <= 1
    # raising the floor can only make not-probing more attractive
    assert np.all(np.diff(share, axis=1) >= -1e-12)
    # every unit with L(0) <= tau^2 is static everywhere
    low = [u for u in units if u.fit.ok and u.L0 <= s.tolerance**2]
    assert np.all(static_share(low, 4e-7, s, 1000.0, L, a) == 1.0)
    assert static_share([], 4e-7, s, 1000.0, L, a) is None


def test_figures_are_pngs_even_without_units(tmp_path, units):
    s = AnalysisSettings()
    phase_diagram(units, 4e-7, s, 1000.0, tmp_path / "p.png")
    shown = decay_plot(units, tmp_path / "d.png")
    assert len(shown) == 12
    phase_diagram([], 4e-7, s, 1000.0, tmp_path / "p0.png")
    assert decay_plot([], tmp_path / "d0.png") == []
    for name in ("p.png", "d.png", "p0.png", "d0.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000


def test_report_md_has_the_sections_and_explains_diagnostics(tmp_path, units):
    result = _result(units)
    summary = InputSummary("traj.csv", 500, 400, 30, 2, 3, 30, ("static_x",), 100.0, None, "max")
    written = write_report(result, tmp_path, summary)
    assert [p.name for p in written] == ["phase_diagram.png", "decay.png", "report.md"]
    text = (tmp_path / "report.md").read_text()
    for needle in (
        "# prehoc-ray analysis",
        "## Settings",
        "## Regimes",
        "## Prediction quality",
        "## Units",
        "![phase diagram](phase_diagram.png)",
        "![decay fits](decay.png)",
        "How to read it",
        "## Diagnostics",
        "traj.csv",
        "steps <= 100",
    ):
        assert needle in text, needle
    for code, help_ in DIAGNOSTIC_HELP.items():
        assert code in text and help_ in text
    assert "more units in decomposition.parquet" not in text or len(units) > 40
    assert "| group:a |" in text and "| candidate:short |" in text


def test_naive_uses_last_value_then_leave_one_out_group_mean():
    last = np.array([0.5, np.nan, np.nan, 0.9])
    final = np.array([0.6, 0.7, 0.8, 1.0])
    group = np.array(["a", "a", "a", "b"])
    naive = naive_prediction(last, final, group)
    assert naive[0] == 0.5 and naive[3] == 0.9
    assert naive[1] == pytest.approx((0.6 + 0.8) / 2)  # its own final is left out
    assert naive[2] == pytest.approx((0.6 + 0.7) / 2)
    # a lone group with nothing observed has no baseline
    assert np.isnan(naive_prediction(np.array([np.nan]), np.array([0.5]), np.array(["z"]))[0])


def test_score_rmse_spearman_coverage():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    s = score(y + 0.5, y, y - 1, y + 0.2)
    assert s.n == 4 and s.rmse == pytest.approx(0.5) and s.spearman == pytest.approx(1.0)
    assert s.coverage == 1.0 and s.mean_width == pytest.approx(1.2)
    s = score(np.array([1.0, np.nan, 3.0]), np.array([1.5, 2.0, np.nan]), np.array([0.0, 0, 0]), np.array([1.2, 5, 5]))
    assert s.n == 1 and s.coverage == 0.0
    assert score(np.array([np.nan]), np.array([1.0])).n == 0


def test_score_predictions_pairs_model_and_naive(units):
    model, naive = score_predictions(_result(units).predictions)
    assert model.n == naive.n == 30
    assert model.rmse < naive.rmse  # the fixture's predictions are the better ones
    assert 0 <= model.coverage <= 1 and np.isnan(naive.coverage)


def test_report_md_escapes_candidate_ids_and_input_names(tmp_path, units):
    """Candidate ids, group names, the input's name and its column names come from the user's
    file: in report.md they are text, never HTML, links, emphasis or extra lines/cells."""
    from dataclasses import replace

    markdown_it = pytest.importorskip("markdown_it")
    evil = 'x<img src=y onerror="alert(1)">\n# injected | cell [link](javascript:alert(2)) *em* `code`'
    bad = units[:3] + [replace(units[3], name=f"candidate:{evil}")]
    summary = InputSummary(f"runs/{evil}.csv", 500, 400, 30, 2, 3, 30, (f"static_{evil}",), 100.0, None, "max")
    write_report(_result(bad), tmp_path, summary)
    text = (tmp_path / "report.md").read_text()
    assert "<img" not in text and "\n# injected" not in text
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    figures = ('<img src="phase_diagram.png"', '<img src="decay.png"')
    assert html.count("<img") == len(figures) and all(f in html for f in figures)
    assert "javascript" not in html.replace("[link](javascript:alert(2))", "")
    assert "<em>em</em>" not in html and "<h1>injected" not in html
    # the name reads as written, on one line, and its row keeps the table's ten cells
    shown = "&lt;img src=y onerror=&quot;alert(1)&quot;&gt; # injected | cell [link](javascript:alert(2)) *em* `code`"
    assert html.count(shown) == 3, html  # the input's name, its static column, the unit
    row = html.split("<td>candidate:x", 1)[1].split("</tr>", 1)[0]
    assert row.count("<td>") == 9, row
