"""Worlds to benchmark policies on: candidates with replayable curves and known true finals.

- `synthetic_world`: the ground-truth generator (sim.synthetic), one family per regime.
- `demo_world`: the demo portfolio (jobs/demo.yaml) as benchmarks/record_demo.py recorded it:
  real LoRA probes of three tiny Llamas on three text tasks, probe seeds to the job's probe cap,
  and one full fine-tune per candidate for the true final. `demo_world(data_dir=LATE_BLOOMERS_DIR)`
  replays an earlier recording of the same kind (data/late-bloomers-recorded: head-only training,
  curves still at chance for hundreds of steps before they rise).
- `deberta_world`: real DeBERTa / DeBERTaV3 fine-tuning runs on MultiNLI (sim.recorded data):
  a family = one base model, a candidate = one hyper-parameter configuration, selection = the
  best configuration of the family. The recorded data have ONE run per configuration, so a
  policy asking for seed s gets the same curve for every s (and pays for it): seed replicates
  do not exist in this world.

Both worlds also hold `history`: completed runs of the same families that are not candidates
(their full curves and finals are known, as a team's past runs would be). Only the policies
that say so use it (static-only and the TuneAhead-style regressor); the engine does not.

Cost model (the same for every policy): a probe step of candidate i costs `cost_per_step[i]`
device-seconds per seed; the full fine-tune of i costs cost_per_step[i] x horizon[i]. Budgets
are expressed as a fraction of `full_cost` = the cost of fully training every candidate once.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prehoc_ray.sim.recorded import DATA_DIR, DEBERTA_FILES
from prehoc_ray.sim.synthetic import generate_portfolio


@dataclass(frozen=True)
class Candidate:
    id: str
    group: str
    horizon: int  # steps of the full fine-tune
    cost_per_step: float  # device-seconds per step per seed
    static: dict[str, float]
    curves: tuple[tuple[np.ndarray, np.ndarray], ...]  # per seed: (steps, values), sorted by step
    true_final: float  # the realised final of the full fine-tune

    @property
    def n_seeds(self) -> int:
        return len(self.curves)

    def curve(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Seed `seed`'s curve; worlds with fewer recorded seeds repeat theirs (documented above)."""
        return self.curves[seed % len(self.curves)]


@dataclass(frozen=True)
class World:
    name: str
    candidates: list[Candidate]
    eval_every: int
    tolerance: float  # tau: the prediction error users tolerate, metric units
    mode: str = "max"  # larger metric is better
    probe_seeds: int = 2  # seeds the engine (and uniform probing) run per candidate
    history: list[Candidate] = field(default_factory=list)
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # extra ground truth (synthetic)
    max_probe_depth: int | None = None  # deepest recorded probe step (None: curves go to the horizon)

    def __post_init__(self) -> None:
        if self.mode != "max":
            raise ValueError(f"mode: only 'max' worlds are supported, got {self.mode!r}")
        ids = [c.id for c in self.candidates]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate candidate ids in world")

    @property
    def full_cost(self) -> float:
        return float(sum(c.cost_per_step * c.horizon for c in self.candidates))

    @property
    def groups(self) -> np.ndarray:
        return np.array([c.group for c in self.candidates], dtype=object)

    @property
    def true_finals(self) -> np.ndarray:
        return np.array([c.true_final for c in self.candidates], float)

    def index(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.candidates)}

    def probe_cap(self, c: Candidate) -> int:
        """The deepest step a probe of `c` can buy: its horizon, or the recorded probe depth."""
        return c.horizon if self.max_probe_depth is None else min(c.horizon, self.max_probe_depth)


def _synthetic_cost(i: int, base: float = 0.01, spread: float = 0.5) -> float:
    # The same deterministic spread of per-step costs as sim.backend.SimulatedBackend.
    return base * (1 + spread * (i % 5) / 4)


def synthetic_world(
    n_candidates: int = 60,
    seed: int = 0,
    n_seeds: int = 3,
    horizon: int = 2000,
    eval_every: int = 20,
    tolerance: float = 0.02,
    n_history: int = 20,
    probe_seeds: int = 2,
) -> World:
    """Three families (Static-Sufficient, Dynamic-Critical, Noise-Dominant) of the generator.

    n_candidates is split over the three families (the first ones get the remainder); each
    family also gets `n_history` completed runs drawn from the same family parameters.
    """
    if n_candidates < 3:
        raise ValueError(f"n_candidates must be >= 3 (one per family), got {n_candidates}")
    per = [n_candidates // 3 + (1 if g < n_candidates % 3 else 0) for g in range(3)]
    total = max(per) + n_history
    p = generate_portfolio(
        n_groups=3,
        candidates_per_group=total,
        n_seeds=n_seeds,
        horizon=float(horizon),
        eval_every=eval_every,
        tolerance=tolerance,
        seed=seed,
    )
    obs = p.observations
    cand = np.asarray(obs.candidate).astype(str)
    order = np.lexsort((obs.step, obs.seed, cand))
    cand_s, seed_s, step_s, val_s = cand[order], np.asarray(obs.seed, int)[order], obs.step[order], obs.value[order]
    static_names = sorted(obs.static)
    bounds = np.flatnonzero(np.r_[True, cand_s[1:] != cand_s[:-1], True])
    by_id: dict[str, tuple] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sl = slice(lo, hi)
        curves = tuple((step_s[sl][seed_s[sl] == s], val_s[sl][seed_s[sl] == s]) for s in np.unique(seed_s[sl]))
        j = order[lo]
        by_id[cand_s[lo]] = (curves, {k: float(obs.static[k][j]) for k in static_names})
    tr = p.truth
    cands: list[Candidate] = []
    hist: list[Candidate] = []
    truth_rows: dict[str, list] = {k: [] for k in tr}
    counts: dict[str, int] = {}
    for k in range(len(tr["candidate"])):
        cid, g = str(tr["candidate"][k]), str(tr["group"][k])
        gi = int(g[1:].split("-")[0])
        n_in = counts.get(g, 0)
        counts[g] = n_in + 1
        curves, static = by_id[cid]
        c = Candidate(cid, g, horizon, _synthetic_cost(len(cands)), static, curves, float(tr["true_final"][k]))
        if n_in < per[gi]:
            cands.append(c)
            for name in tr:
                truth_rows[name].append(tr[name][k])
        elif n_in < per[gi] + n_history:
            hist.append(c)
    truth = {
        k: np.array(v, dtype=object if k in ("candidate", "group", "regime") else float) for k, v in truth_rows.items()
    }
    return World(f"synthetic-s{seed}", cands, eval_every, tolerance, probe_seeds=probe_seeds, history=hist, truth=truth)


DEMO_DIR = DATA_DIR / "demo-recorded"
LATE_BLOOMERS_DIR = DATA_DIR / "late-bloomers-recorded"


def demo_world(seed: int = 0, probe_seeds: int = 2, tolerance: float | None = None, data_dir: Path = DEMO_DIR) -> World:
    """A recorded real portfolio (benchmarks/record_demo.py): family = task, candidate = task x model.

    Probes replay the recorded probe seeds (to the recording's probe depth, evaluated every
    `eval_every` steps of its meta.json); the true final is the last evaluation of the
    candidate's independent full fine-tune. `tolerance`: default, the recorded job's. World `seed` picks which
    `probe_seeds` of the recorded seeds play seeds 0, 1, ... (the seed-th combination), so the
    worlds differ in probe noise only: the candidates and their finals are the same. Cost per
    step = the median measured training CPU-seconds per step of the candidate's probe runs. Static
    features = the static signals the driver computes before probing (static.parquet). No
    history (nobody ran these families before), so the policies that need past runs do not apply.
    """
    import pyarrow.parquet as pq

    path = Path(data_dir) / "curves.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no recorded demo portfolio; run benchmarks/record_demo.py first")
    statics: dict[str, dict[str, float]] = {}
    if (Path(data_dir) / "static.parquet").exists():
        st_tab = pq.read_table(Path(data_dir) / "static.parquet").to_pydict()
        for k, cid in enumerate(st_tab["candidate"]):
            statics[cid] = {name: float(col[k]) for name, col in st_tab.items() if name != "candidate"}
    rec = json.loads((Path(data_dir) / "meta.json").read_text()) if (Path(data_dir) / "meta.json").exists() else {}
    if tolerance is None:
        tolerance = float(rec.get("tolerance", 0.02))
    t = pq.read_table(path).to_pydict()
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    meta: dict[str, dict] = {}
    for cid, grp, seed_, kind, st, v, h, sps in zip(
        t["candidate"], t["group"], t["seed"], t["kind"], t["step"], t["value"], t["horizon"], t["train_s_per_step"]
    ):
        runs.setdefault((cid, int(seed_)), []).append((float(st), float(v)))
        m = meta.setdefault(cid, {"group": grp, "horizon": int(h), "sps": [], "probe_seeds": set(), "full": None})
        if kind == "probe":
            m["probe_seeds"].add(int(seed_))
            m["sps"].append(float(sps))
        else:
            m["full"] = int(seed_)
    recorded = sorted(set.intersection(*(m["probe_seeds"] for m in meta.values())))
    combos = list(itertools.combinations(recorded, probe_seeds))
    if not combos:
        raise ValueError(f"{path}: {len(recorded)} recorded probe seed(s), fewer than probe_seeds={probe_seeds}")
    use = combos[seed % len(combos)]
    cands, depth = [], 0
    for cid in sorted(meta):
        m = meta[cid]
        if m["full"] is None:
            raise ValueError(f"{path}: candidate {cid} has no full run (kind=full)")
        curves = []
        for s in use:
            pts = np.array(sorted(runs[(cid, s)]))
            curves.append((pts[:, 0], pts[:, 1]))
            depth = max(depth, int(pts[-1, 0]))
        final = sorted(runs[(cid, m["full"])])[-1][1]
        cands.append(
            Candidate(
                cid,
                str(m["group"]),
                m["horizon"],
                float(np.median(m["sps"])),
                statics.get(cid, {}),
                tuple(curves),
                float(final),
            )
        )
    if "eval_every" in rec:
        eval_every = int(rec["eval_every"])
    else:  # a recording from before meta.json said: the spacing of the probes' evaluations
        from prehoc_ray.bench.worlds_table import infer_eval_every

        eval_every = infer_eval_every([st for c in cands for st, _ in c.curves])
    name = Path(data_dir).name.removesuffix("-recorded")
    return World(f"{name}-s{seed}", cands, eval_every, tolerance, probe_seeds=probe_seeds, max_probe_depth=depth)


def _load_deberta_runs(model: str) -> list[dict]:
    with open(DATA_DIR / DEBERTA_FILES[model]) as fh:
        return [json.loads(line) for line in fh]


_RUNS_CACHE: dict[str, list[dict]] = {}


def deberta_world(
    n_candidates: int = 40,
    n_families: int = 2,
    seed: int = 0,
    n_history: int = 60,
    tolerance: float = 0.02,
    split: str = "matched",
    models: tuple[str, ...] = ("deberta-base", "deberta-v3-base"),
) -> World:
    """Random families of recorded DeBERTa configurations (MultiNLI validation accuracy).

    Family f uses base model models[f % len(models)] and draws n_candidates configurations
    plus n_history others (history) without replacement, with `seed`. Per-step cost is
    proportional to the batch size (0.01 device-seconds per step at batch 32): a step's work
    scales with the examples it processes.
    """
    rng = np.random.default_rng(seed)
    cands: list[Candidate] = []
    hist: list[Candidate] = []
    used: dict[str, set] = {}
    for f in range(n_families):
        model = models[f % len(models)]
        runs = _RUNS_CACHE.setdefault(model, _load_deberta_runs(model))
        free = np.array([i for i in range(len(runs)) if i not in used.setdefault(model, set())])
        pick = rng.choice(free, size=n_candidates + n_history, replace=False)
        used[model].update(int(i) for i in pick)
        group = f"f{f}-{model}"
        for k, i in enumerate(pick):
            run = runs[int(i)]
            curve = np.asarray(run["learning_curves"][split], float)
            total = int(run["total_model_steps"])
            static = {
                "log_lr": float(np.log10(run["learning_rate"])),
                "batch_size": float(run["train_batch_size"]),
                "epochs": float(run["num_train_epochs"]),
                "warmup_frac": float(run["warmup_steps"]) / total,
                "dropout": float(run["cls_drop_out"]),
            }
            c = Candidate(
                f"{group}/{run['iteration']:04d}",
                group,
                total,
                0.01 * run["train_batch_size"] / 32,
                static,
                ((curve[:, 0].copy(), curve[:, 1].copy()),),
                float(curve[-1, 1]),
            )
            (cands if k < n_candidates else hist).append(c)
    return World(f"deberta-s{seed}", cands, 1000, tolerance, probe_seeds=2, history=hist)
