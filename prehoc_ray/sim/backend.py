"""A simulated probe backend: replays a synthetic portfolio's curves as if probes ran.

Each (candidate, seed) has a fixed curve from the generator, so a probe from step a to b
returns exactly the evaluation points in (a, b], and costs a deterministic number of
device-seconds. The execution layer runs its whole loop against this in CI, without GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prehoc_ray.core.ask_tell import ProbeOutcome, drive
from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings, ProbeOrder
from prehoc_ray.sim.synthetic import SyntheticPortfolio


@dataclass
class SimulatedBackend:
    portfolio: SyntheticPortfolio
    cost_per_step: float = 0.01  # device-seconds per step per seed
    cost_spread: float = 0.5  # candidates differ in cost by up to this factor (deterministic)

    def __post_init__(self) -> None:
        obs = self.portfolio.observations
        self._curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        cand = np.asarray(obs.candidate).astype(str)
        seed = np.asarray(obs.seed, int)
        step = np.asarray(obs.step, float)
        value = np.asarray(obs.value, float)
        # One sort by (candidate, seed, step), then split where the key changes: linear in the
        # observations (a mask per curve is quadratic, minutes at thousands of candidates).
        order = np.lexsort((step, seed, cand))
        cand, seed, step, value = cand[order], seed[order], step[order], value[order]
        starts = np.flatnonzero(np.r_[True, (cand[1:] != cand[:-1]) | (seed[1:] != seed[:-1])])
        ends = np.r_[starts[1:], cand.size]
        for a, b in zip(starts.tolist(), ends.tolist()):
            self._curves[(str(cand[a]), int(seed[a]))] = (step[a:b], value[a:b])
        names = sorted({c for c, _ in self._curves})
        self._lam = {c: self.cost_per_step * (1 + self.cost_spread * (i % 5) / 4) for i, c in enumerate(names)}
        self.n_seeds = 1 + max(s for _, s in self._curves)

    def candidates(self) -> list[CandidateInfo]:
        tr = self.portfolio.truth
        # The simulator knows each candidate's true cost; handing it over as the prior keeps
        # the first round (budgeted before anything is measured) from overspending.
        return [
            CandidateInfo(str(c), str(g), float(h), prior_cost_per_step=self._lam[str(c)], prior_cost_exact=True)
            for c, g, h in zip(tr["candidate"], tr["group"], tr["horizon"])
        ]

    def run(self, order: ProbeOrder) -> ProbeOutcome:
        """Rows in (start, target] and the device-seconds they cost (a core.ask_tell.ProbeBackend)."""
        key = (order.candidate, order.seed)
        if key not in self._curves:
            raise KeyError(f"simulated backend has no curve for candidate {order.candidate!r} seed {order.seed}")
        steps, values = self._curves[key]
        m = (steps > order.start_step) & (steps <= order.target_step)
        rows = [
            {
                "candidate": order.candidate,
                "seed": order.seed,
                "step": float(s),
                "value": float(v),
                "probe_id": order.probe_id,
            }
            for s, v in zip(steps[m], values[m])
        ]
        return ProbeOutcome(rows, self._lam[order.candidate] * (order.target_step - order.start_step))


def run_simulated(
    portfolio: SyntheticPortfolio,
    settings: EngineSettings,
    backend: SimulatedBackend | None = None,
    max_rounds: int = 1000,
) -> Engine:
    """The whole ask/tell loop in-process against the simulated backend."""
    backend = backend or SimulatedBackend(portfolio)
    engine = Engine(backend.candidates(), settings)
    drive(engine, backend, max_rounds=max_rounds)
    return engine
