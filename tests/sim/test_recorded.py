"""The recorded DeBERTa curves (data/opda-deberta) as Observations, and the predictor on them."""

from __future__ import annotations

import numpy as np
import pytest

from prehoc_ray.core.analysis import AnalysisSettings, analyze
from prehoc_ray.report.analysis_scoring import score_predictions
from prehoc_ray.sim.recorded import DATA_DIR, DEBERTA_FILES, load_deberta

pytestmark = pytest.mark.skipif(
    not all((DATA_DIR / f).exists() for f in DEBERTA_FILES.values()), reason="recorded DeBERTa data not present"
)


def _blas_one_thread():
    # Thousands of tiny solves: spinning BLAS threads cost more than they give (see cli/analyze.py).
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def test_loader_returns_2048_candidates_with_finite_finals():
    obs = load_deberta()
    cands = obs.per_candidate()
    assert len(cands) == 2048
    assert {c.group for c in cands} == {"deberta-base", "deberta-v3-base"}
    finals = np.array([c.final for c in cands])
    assert np.isfinite(finals).all() and ((finals > 0) & (finals < 1)).all()
    # final = the last point of the curve; horizon = total steps, reached by the curve
    for c in cands[:50] + cands[-50:]:
        steps, values = c.seeds[0]
        assert np.all(np.diff(steps) > 0) and steps[-1] == pytest.approx(c.horizon)
        assert values[-1] == pytest.approx(c.final)
    assert set(obs.static_names) == {
        "static_log_lr",
        "static_batch_size",
        "static_epochs",
        "static_warmup_frac",
        "static_dropout",
    }
    for values in obs.static.values():
        assert np.isfinite(values).all()


def test_loader_limit_and_single_model():
    obs = load_deberta(("deberta-v3-base",), limit=5)
    cands = obs.per_candidate()
    assert len(cands) == 5 and {c.group for c in cands} == {"deberta-v3-base"}


@pytest.mark.slow
def test_half_depth_beats_last_value_with_calibrated_intervals():
    """At 50% of each run's horizon, on 300 runs per model: out-of-fold RMSE below the naive
    last-observed-value predictor's, and 90% intervals covering between 80% and 97%."""
    obs = load_deberta(limit=300)
    depth = {c.candidate: 0.5 * c.horizon for c in obs.per_candidate()}
    with _blas_one_thread():
        result = analyze(obs, depth, AnalysisSettings(level=0.9, n_boot=20))
    model, naive = score_predictions(result.predictions)
    assert model.n == naive.n == 600
    assert model.rmse < naive.rmse, (model, naive)
    assert 0.80 <= model.coverage <= 0.97, model
    assert model.spearman > 0.9
