"""Real fine-tuning curves recorded by others, as Observations (see data/README.md).

These are the ground truth nobody on this team produced: the predictor, the decay fit and the
allocation are checked against them in tests and benchmarks, and `analyze` can be pointed at
the converted tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from prehoc_ray.core.observations import Observations

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEBERTA_FILES = {
    "deberta-base": "opda-deberta/deberta-base_tuning.results.jsonl",
    "deberta-v3-base": "opda-deberta/deberta-v3-base_tuning.results.jsonl",
}


def load_deberta(
    models: tuple[str, ...] = ("deberta-base", "deberta-v3-base"),
    split: str = "matched",
    data_dir: Path = DATA_DIR,
    limit: int | None = None,
) -> Observations:
    """One candidate per hyper-parameter configuration; group = the base model.

    value = validation accuracy; final = accuracy at the end of training; horizon = total
    steps; the sampled hyper-parameters are the static features (known before training).
    """
    cols: dict[str, list] = {k: [] for k in ("candidate", "step", "value", "group", "final", "horizon")}
    static: dict[str, list] = {
        k: [] for k in ("static_log_lr", "static_batch_size", "static_epochs", "static_warmup_frac", "static_dropout")
    }
    for model in models:
        path = data_dir / DEBERTA_FILES[model]
        with open(path) as fh:
            for n, line in enumerate(fh):
                if limit is not None and n >= limit:
                    break
                run = json.loads(line)
                curve = np.asarray(run["learning_curves"][split], float)
                total = float(run["total_model_steps"])
                stat = {
                    "static_log_lr": np.log10(run["learning_rate"]),
                    "static_batch_size": run["train_batch_size"],
                    "static_epochs": run["num_train_epochs"],
                    "static_warmup_frac": run["warmup_steps"] / total,
                    "static_dropout": run["cls_drop_out"],
                }
                for step, acc in curve:
                    cols["candidate"].append(f"{model}/{run['iteration']:04d}")
                    cols["step"].append(step)
                    cols["value"].append(acc)
                    cols["group"].append(model)
                    cols["final"].append(curve[-1, 1])
                    cols["horizon"].append(total)
                    for k, v in stat.items():
                        static[k].append(v)
    return Observations(
        candidate=np.array(cols["candidate"], dtype=object),
        step=np.array(cols["step"]),
        value=np.array(cols["value"]),
        group=np.array(cols["group"], dtype=object),
        final=np.array(cols["final"]),
        horizon=np.array(cols["horizon"]),
        static={k: np.array(v, float) for k, v in static.items()},
    )
