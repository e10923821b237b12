"""Selecting among 30 LLMs from fine-tunes on data subsets (Lin et al., ICML 2024, arXiv
2402.02314; data/rectified-scaling-law/).

Protocol of the paper's Table 1 (as in the authors' src/draw.py and src/model_select.py,
re-implemented here): for a data budget max = 1638400 / r, r in 8..512, a method sees each
model's test loss after fine-tuning on the subsets 200, 400, ..., max (and the zero-shot loss
at 0 where it uses it), predicts the loss after fine-tuning on the full 1638400 examples, and
selects the model with the lowest prediction. PearCorr = Pearson correlation of predicted and
true full-data losses over the 30 models; RelAcc = (worst - true loss of the selected) /
(worst - best).

Predictors:
- ats: the paper's AtS. Find the phase transition by walking back from the largest subset: a
  line is fitted in log-log space to the last p points (p = k, k+1, ...) and the walk stops at
  the first earlier point whose standardized residual exceeds delta (k=3, delta=5); the line
  on the post-transition points is extrapolated. (As in the authors' code, when no point
  breaks the line, the smallest subset is still dropped.)
- rectified: the rectified scaling law L(D) = B / (D_l + D^beta) + E fitted (log-loss least
  squares, multi-start) on the zero-shot point and every subset up to the budget.
- prehoc: prehoc-ray's core learning-curve extrapolator (core.curves.extrapolate: a
  saturating power law a + b D^-e, later points weighted more, the extrapolated gain clipped
  to the range already observed and shrunk by the fit's F statistic), used on the data-size
  axis exactly as it is used on the step axis.
- prehoc_unclipped: the same power-law fit without the clip and the shrinkage (what is left
  of the core's predictor once its safety rules for training curves are removed).
- zero_shot / subtuning / model_size: the paper's static and naive baselines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import pearsonr

from prehoc_ray.core.curves import _EXPONENTS, extrapolate
from prehoc_ray.core.powerlaw import profile_fit, weighted_affine_fit
from prehoc_ray.sim.recorded import DATA_DIR

LLM_DIR = DATA_DIR / "rectified-scaling-law"
DATASETS = ("flan", "wmt19", "gigaword")
FULL = 1638400
RATIOS = (8, 16, 32, 64, 128, 256, 512)
METHODS = ("ats", "rectified", "prehoc", "prehoc_unclipped", "zero_shot", "subtuning", "model_size")


@dataclass(frozen=True)
class LLMData:
    name: str
    models: list[str]
    sizes: np.ndarray  # data-subset sizes, 0 = zero-shot
    loss: np.ndarray  # (models, sizes) test loss
    params: np.ndarray  # model parameter counts

    def column(self, d: int) -> np.ndarray:
        return self.loss[:, int(np.flatnonzero(self.sizes == d)[0])]


def load_llm(name: str, data_dir: Path = LLM_DIR) -> LLMData:
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    with open(data_dir / f"{name}.csv") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    dcols = [i for i, h in enumerate(head) if h.isdigit()]
    models = [r[0] for r in rows[1:]]
    loss = np.array([[float(r[i]) for i in dcols] for r in rows[1:]])
    params = np.array([float(r[head.index("size")]) for r in rows[1:]])
    return LLMData(name, models, np.array([int(head[i]) for i in dcols]), loss, params)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, icept = np.polyfit(x, y, 1)
    return float(slope), float(icept)


def ats_predict(D: np.ndarray, L: np.ndarray, target: float = FULL, k: int = 3, delta: float = 5.0) -> float:
    """AtS: log-log line on the points after the estimated phase transition, at `target`."""
    x, y = np.log(np.asarray(D, float)), np.log(np.asarray(L, float))
    n = x.size
    if n <= k:
        start = 0
    else:
        p = k
        for p in range(k, n):
            s, b = _line(x[-p:], y[-p:])
            sd = float(np.std(y[-p:] - (s * x[-p:] + b)))
            with np.errstate(divide="ignore", invalid="ignore"):
                z = abs(y[-p - 1] - (s * x[-p - 1] + b)) / sd
            if z > delta:
                break
        start = n - p  # the authors' transition index + 1
    s, b = _line(x[start:], y[start:])
    return float(np.exp(s * np.log(target) + b))


def rectified_law(D: np.ndarray, B: float, D_l: float, beta: float, E: float) -> np.ndarray:
    return B / (D_l + np.asarray(D, float) ** beta) + E


def fit_rectified(D: np.ndarray, L: np.ndarray) -> tuple[float, float, float, float]:
    """Least squares of log L on the log of the rectified law.

    For fixed (D_l, beta) the law is affine in (B, E) >= 0: a vectorised grid over (D_l, beta)
    with the core's non-negative weighted affine solve (weights 1/L^2 ~ relative error) gives
    the start; scipy's least_squares refines all four parameters in log space, E kept below
    the smallest observed loss.
    """
    D, L = np.asarray(D, float), np.asarray(L, float)
    logL = np.log(L)
    Lmin = float(L.min())
    betas = np.geomspace(0.03, 2.0, 24)
    dls = np.geomspace(1e-3, 1e9, 37)
    bb, dd = np.meshgrid(betas, dls, indexing="ij")
    u = 1.0 / (dd[..., None] + D[None, None, :] ** bb[..., None])  # (beta, D_l, n)
    w = np.broadcast_to(1.0 / L**2, u.shape)
    E, B = weighted_affine_fit(u, np.broadcast_to(L, u.shape), w, nonneg=True)
    fitted = np.maximum(B[..., None] * u + E[..., None], 1e-12)
    sse = ((np.log(fitted) - logL) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    x0 = np.log([max(B[i, j], 1e-8), dls[j], betas[i], min(max(E[i, j], 1e-6 * Lmin), Lmin)])
    lo = np.log([1e-10, 1e-10, 1e-3, 1e-7 * Lmin])
    hi = np.log([1e40, 1e40, 5.0, Lmin])

    def resid(th: np.ndarray) -> np.ndarray:
        B_, Dl, beta, E_ = np.exp(th)
        return np.log(B_ / (Dl + D**beta) + E_) - logL

    sol = least_squares(resid, np.clip(x0, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), method="trf", max_nfev=300)
    Bf, Dlf, betaf, Ef = np.exp(sol.x)
    return float(Bf), float(Dlf), float(betaf), float(Ef)


def prehoc_unclipped(D: np.ndarray, L: np.ndarray, target: float = FULL) -> float:
    D, L = np.asarray(D, float), np.asarray(L, float)
    a, b, e, _ = profile_fit(D, L, D / D[-1], _EXPONENTS)
    return float(a + b * target ** (-e))


def predict(data: LLMData, method: str, ratio: int) -> np.ndarray:
    """Predicted full-data loss (or, for the static baselines, a score where lower = better)."""
    budget = FULL // ratio
    sub = (data.sizes > 0) & (data.sizes <= budget)
    D = data.sizes[sub]
    if method == "ats":
        return np.array([ats_predict(D, row) for row in data.loss[:, sub]])
    if method == "rectified":
        m = data.sizes <= budget
        return np.array([rectified_law(FULL, *fit_rectified(data.sizes[m], row)) for row in data.loss[:, m]])
    if method == "prehoc":
        return np.array([extrapolate(D, row, FULL) for row in data.loss[:, sub]])
    if method == "prehoc_unclipped":
        return np.array([prehoc_unclipped(D, row) for row in data.loss[:, sub]])
    if method == "zero_shot":
        return data.column(0)
    if method == "subtuning":
        return data.column(budget)
    if method == "model_size":
        return np.log(data.params)  # the paper's feature; `score` selects the largest model
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def score(data: LLMData, pred: np.ndarray, larger_is_better: bool = False) -> tuple[float, float]:
    """(PearCorr, RelAcc) in percent, rounded as the paper rounds (4 decimals, then x100).

    pred: predicted full-data loss (the lowest is selected), or with `larger_is_better` a
    score whose largest value is selected (model size).
    """
    true = data.column(FULL)
    pc = round(float(pearsonr(pred, true)[0]), 4)
    chosen = true[int(np.argmax(pred) if larger_is_better else np.argmin(pred))]
    ra = round(float((true.max() - chosen) / (true.max() - true.min())), 4)
    return 100 * pc, 100 * ra


def table(methods: tuple[str, ...] = METHODS) -> list[dict]:
    rows = []
    for name in DATASETS:
        data = load_llm(name)
        for method in methods:
            for r in RATIOS:
                pc, ra = score(data, predict(data, method, r), larger_is_better=method == "model_size")
                rows.append({"dataset": name.upper(), "method": method, "ratio": r, "PearCorr": pc, "RelAcc": ra})
    return rows


def published(path: Path = LLM_DIR / "ats_results_tab1.txt") -> dict[tuple[str, str, str, int], float]:
    """(dataset, method, metric, ratio) -> the paper's Table 1 value (percent)."""
    import re

    lines = Path(path).read_text().splitlines()
    header = next(line for line in lines if "FLAN-AtS" in line)
    cols = [c.strip() for c in header.split("&")[1:]]
    cols[-1] = cols[-1].replace("\\\\", "").strip()
    out = {}
    for line in lines:
        m = re.match(r"\\textbf\{(\w+)\}-1/(\d+)", line.strip())
        if not m:
            continue
        cells = [c.strip().rstrip("\\").strip() for c in line.split("&")[1:]]
        for col, cell in zip(cols, cells):
            ds, meth = col.split("-")
            val = float(re.sub(r"\\(textbf|underline)\{([^}]*)\}", r"\2", cell))
            out[(ds, meth, m.group(1), int(m.group(2)))] = val
    return out
