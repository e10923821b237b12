"""prehoc-ray inside Ray Tune: `PrehocScheduler`, a TrialScheduler that applies the engine's
probe allocation to Tune trials, and `make_replay_trainable`, a trainable that replays
recorded curves (to try a scheduler on fine-tunes already run).

    from ray import tune
    from prehoc_ray.tune import PrehocScheduler

    sched = PrehocScheduler(metric="acc", mode="max", budget=300, max_t=100, group_by="task")
    tune.Tuner(train_fn, param_space=space, tune_config=tune.TuneConfig(scheduler=sched)).fit()
    sched.picks()  # task -> the trial to train in full; sched.plan(): predictions, intervals, regimes

Importing this package imports ray.tune.
"""

from prehoc_ray.tune.ledger import Ledger, Replay, TrialRecord
from prehoc_ray.tune.replay import make_replay_trainable
from prehoc_ray.tune.scheduler import LEDGER_FILE, PLAN_FILE, PrehocScheduler

__all__ = ["LEDGER_FILE", "PLAN_FILE", "Ledger", "PrehocScheduler", "Replay", "TrialRecord", "make_replay_trainable"]
