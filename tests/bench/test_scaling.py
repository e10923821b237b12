"""The 30-LLM study: AtS re-implementation equals the paper's Table 1; the rectified law fit
recovers known parameters."""

import numpy as np
import pytest

from prehoc_ray.bench import scaling
from prehoc_ray.bench.ats_report import reproduction_check


def test_rectified_fit_recovers_known_parameters():
    D = np.array([0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 102400], float)
    for true in [(300.0, 50.0, 0.5, 1.2), (40.0, 8.0, 0.3, 0.6)]:
        L = scaling.rectified_law(D, *true)
        B, Dl, beta, E = scaling.fit_rectified(D, L)
        np.testing.assert_allclose([B, Dl, beta, E], true, rtol=1e-3)
        assert scaling.rectified_law(scaling.FULL, B, Dl, beta, E) == pytest.approx(
            scaling.rectified_law(scaling.FULL, *true), rel=1e-4
        )


def test_ats_is_exact_on_a_pure_power_law_and_drops_the_pre_power_phase():
    D = 200.0 * 2 ** np.arange(8)
    L = 5.0 * D**-0.2
    assert scaling.ats_predict(D, L) == pytest.approx(5.0 * scaling.FULL**-0.2)
    bent = L.copy()
    bent[:2] = [4.0, 3.9]  # a flat pre-power phase: far off the line
    assert scaling.ats_predict(D, bent) == pytest.approx(5.0 * scaling.FULL**-0.2)


def test_paper_table_1_is_reproduced_exactly():
    rows, pub = scaling.table(("ats", "zero_shot", "subtuning", "model_size")), scaling.published()
    ok, n, worst = reproduction_check(rows, pub)
    assert n == 3 * 4 * 2 * 7
    assert ok == n, f"largest difference {worst}"


def test_published_table_parses():
    pub = scaling.published()
    assert pub[("FLAN", "AtS", "PearCorr", 8)] == 90.9
    assert pub[("GIGAWORD", "ModelSize", "RelAcc", 512)] == 71.3
    assert len(pub) == 3 * 4 * 2 * 7
