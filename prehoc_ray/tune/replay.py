"""A Ray Tune function trainable that replays recorded learning curves.

Why: to see what PrehocScheduler (or any Tune scheduler) would have done with fine-tunes you
already ran, without running them again, and to test schedulers on known ground truth. Each
trial replays one curve, one report per evaluation, and reports a checkpoint with every result
(the step it reached), so a paused or restored trial resumes where it stopped, exactly as a
real training loop that checkpoints would.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

CHECKPOINT_FILE = "replay_state.json"


def make_replay_trainable(
    curves: Mapping[str, Sequence[float]],
    *,
    key: str = "curve",
    metric: str = "value",
    eval_every: int = 1,
    pace_s: float = 0.0,
) -> Callable[[dict], None]:
    """A function trainable: config[key] names a curve of `curves` (key may be an "a/b" path
    into nested config); its k-th report is {metric: curve[k - 1], "step": k * eval_every}
    (training_iteration k), with a checkpoint of k.

    A trial restored from a checkpoint continues at report k + 1. pace_s: seconds each report
    sleeps first (models training time, so that concurrent trials interleave).
    """
    table = {str(k): [float(v) for v in vals] for k, vals in curves.items()}

    def replay(config: dict) -> None:
        from ray import tune

        node = config
        for part in [key] if key in config else key.split("/"):
            node = node[part]
        values = table[str(node)]
        k = 0
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                with open(os.path.join(d, CHECKPOINT_FILE)) as fh:
                    k = int(json.load(fh)["k"])
        while k < len(values):
            k += 1
            if pace_s:
                time.sleep(pace_s)
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, CHECKPOINT_FILE), "w") as fh:
                    json.dump({"k": k}, fh)
                tune.report(
                    {metric: values[k - 1], "step": k * eval_every}, checkpoint=tune.Checkpoint.from_directory(d)
                )

    replay.__name__ = "replay_curves"
    return replay
