"""Static signals X_s: what is known about a candidate before any training, in one pass.

- the base model's zero-shot per-token loss and task metric on the held-out slice (the same
  evaluation the probe reports, so they are the curve's value at step 0);
- dataset statistics: sizes, prompt/answer token lengths, truncation, label entropy;
- the gradient norm of the training loss at the base weights (all base parameters, on a fixed
  batch of training examples): how hard the task pulls the model.

    from prehoc_ray.runner.static import compute_static_signals
    signals = compute_static_signals(candidate)      # {"static_zero_shot_loss": ..., ...}
    rows = with_static(probe_rows, signals)          # the table format `analyze` reads
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prehoc_ray import types as T

# Training examples the static gradient norm is measured on (fixed: the first examples of the
# shuffled training split, whatever the probe seed).
GRAD_EXAMPLES = 16


def compute_static_signals(candidate) -> dict[str, float]:
    import numpy as np
    import torch

    from prehoc_ray.runner.batches import collate
    from prehoc_ray.runner.data import label_entropy
    from prehoc_ray.runner.evaluation import eval_batch_size, evaluate
    from prehoc_ray.runner.probe import prepare
    from prehoc_ray.runner.trainer import pick_device, to_device

    prep = prepare(candidate)
    task, base, codec = prep.task, prep.base, prep.base.codec
    max_len = candidate.config.max_seq_len

    prompt_lens = np.array([len(ids) for ids in codec.encode_batch([e.prompt for e in task.train])], dtype=float)
    answer_lens = np.array([x.n_answer for x in prep.train], dtype=float)
    kept_prompt = np.array([len(x.ids) - x.n_answer for x in prep.train], dtype=float)
    n_labels = len(task.labels) if task.labels else len({e.answer for e in task.train})
    entropy = label_entropy(e.answer for e in task.train)

    device = pick_device()
    model = base.model.to(device)
    try:
        zs_loss, zs_metric = evaluate(
            prep.call,
            model,
            prep.eval_set,
            pad_id=codec.pad_id,
            device=device,
            batch_size=eval_batch_size(candidate.config.batch_size),
            autocast=torch.autocast(device_type=device.type, enabled=False),
        )
        grad_norm = _grad_norm_at_base(prep, model, device, collate, to_device)
    finally:
        base.model.to("cpu")

    out = {
        "static_zero_shot_loss": zs_loss,
        "static_zero_shot_metric": zs_metric,
        "static_train_examples": float(len(task.train)),
        "static_eval_examples": float(len(task.eval)),
        "static_is_classification": 1.0 if task.kind == "classification" else 0.0,
        "static_num_labels": float(n_labels),
        "static_label_entropy": entropy,
        "static_label_entropy_norm": entropy / math.log(n_labels) if n_labels > 1 else 0.0,
        "static_prompt_tokens_mean": float(prompt_lens.mean()),
        "static_prompt_tokens_p90": float(np.percentile(prompt_lens, 90)),
        "static_answer_tokens_mean": float(answer_lens.mean()),
        "static_truncated_frac": float((kept_prompt < prompt_lens).mean()),
        "static_seq_tokens_mean": float((kept_prompt + answer_lens).mean()),
        "static_base_params": float(base.info.get("n_params", 0.0)),
        "static_grad_norm": grad_norm,
        "static_max_seq_len": float(max_len),
    }
    return out


def _grad_norm_at_base(prep, model, device, collate, to_device) -> float:
    import torch

    items = prep.train[:GRAD_EXAMPLES]
    params = [p for p in model.parameters() if p.is_floating_point()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        model.eval()  # no dropout: the gradient of the deterministic loss
        batch = to_device(collate(items, prep.base.codec.pad_id), device)
        loss = prep.call.loss(model, batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        sq = sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None)
        return math.sqrt(sq)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def with_static(rows: Iterable[dict], signals: dict[str, float]) -> list[dict]:
    """Trajectory rows with the candidate's static_* columns added (the table `analyze` reads)."""
    static = {k: v for k, v in signals.items() if k.startswith(T.STATIC_PREFIX)}
    return [{**r, **static} for r in rows]


def static_row(candidate, signals: dict[str, float]) -> dict:
    """One row per candidate: its id and its static_* features."""
    return {T.CANDIDATE: candidate.id, **{k: v for k, v in signals.items() if k.startswith(T.STATIC_PREFIX)}}
