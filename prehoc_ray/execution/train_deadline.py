"""The probe timeout of a Ray Train run, enforced by its own controller.

The driver force-cancels a probe that outlives its timeout. For a Train run that would kill the
launcher and, with it, the Train controller, but not the placement group the controller made:
a placement group lives as long as the job, and Ray Train's cleaner for it asks the dashboard's
state API, which an embedded prehoc-ray Ray does not start. So the controller aborts itself at
the probe's deadline (Ray Train then stops the workers and removes their placement group), and
the launcher reports the attempt as timed out before the driver's cancel would come.

A separate module because it imports Ray Train's controller API, which single-process probe
workers (that import probes.py) should not pay for.
"""

from __future__ import annotations

import threading
import time

import ray
from ray.train.v2._internal.execution.callback import ControllerCallback


class RunDeadline(ControllerCallback):
    """Abort the Train run at `deadline` (time.time() seconds; the controller runs on the
    launcher's node, so both read the same clock)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def after_controller_start(self, train_run_context) -> None:
        controller = ray.get_runtime_context().current_actor
        # abort() runs on the controller's event loop: while the loop is blocked waiting for the
        # placement group it lands after that wait (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S).
        timer = threading.Timer(max(0.0, self.deadline - time.time()), controller.abort.remote)
        timer.daemon = True
        timer.start()
