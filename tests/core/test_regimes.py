import numpy as np
import pytest

from prehoc_ray.core.regimes import RegimeThresholds, classify, explain
from prehoc_ray.types import Regime

T = RegimeThresholds(tolerance=0.1)  # tau^2 = 0.01


@pytest.mark.parametrize(
    "L_int,L0,J0,Js,expected",
    [
        (0.02, 0.05, 0.05, 0.03, Regime.NOISE_DOMINANT),
        (0.001, 0.005, 0.005, 0.004, Regime.STATIC_SUFFICIENT),  # L0 within tolerance
        (0.001, 0.05, 0.02, 0.03, Regime.STATIC_SUFFICIENT),  # probing does not pay
        (0.001, 0.05, 0.05, 0.01, Regime.DYNAMIC_CRITICAL),
        (np.nan, 0.05, np.nan, np.nan, Regime.UNDETERMINED),
        (np.nan, 0.001, np.nan, np.nan, Regime.STATIC_SUFFICIENT),
    ],
)
def test_rules(L_int, L0, J0, Js, expected):
    r = classify(L_int, L0, J0, Js, T).item()
    assert r is expected
    assert explain(r, L_int, L0, J0, Js, T)


def test_vectorised_and_configurable():
    L_int = np.array([0.005, 0.02])
    out = classify(L_int, 1.0, 1.0, 0.5, RegimeThresholds(0.1, noise_margin=3.0))
    assert list(out) == [Regime.DYNAMIC_CRITICAL, Regime.DYNAMIC_CRITICAL]
    with pytest.raises(ValueError, match="tolerance"):
        RegimeThresholds(0.0)
