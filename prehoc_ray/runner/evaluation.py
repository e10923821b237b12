"""Evaluation on the fixed held-out slice: per-token eval loss and the task metric.

- classification: accuracy, by scoring every label's likelihood after the prompt and taking the
  most likely (robust: the model never has to produce a well-formed label on its own). The eval
  loss is the loss of the true label's tokens. The prompt is run once and its KV cache shared
  by all labels (labels are a few tokens, prompts a hundred: ~n_labels times cheaper than
  scoring every prompt+label sequence, which remains the fallback for models without a cache).
- generation: exact match of greedy decoding. Greedy decoding reproduces the reference (and
  stops at eos) exactly when, given the reference prefix, the argmax at every answer position is
  the reference token -- so one teacher-forced pass gives the exact-match of greedy decoding
  (ties aside) without a decoding loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from prehoc_ray.runner.batches import Encoded, answer_text, collate, encode_examples
from prehoc_ray.runner.data import RENDERED, TaskData

ACCURACY, EXACT_MATCH = "accuracy", "exact_match"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSet:
    kind: str
    metric: str
    items: tuple[Encoded, ...]  # sequences to score, longest first (less padding per batch)
    example: tuple[int, ...]  # eval example each sequence belongs to
    is_truth: tuple[bool, ...]  # the sequence carries the reference answer
    n_examples: int
    # classification, for label scoring over a shared prompt cache
    prompts: tuple[tuple[int, ...], ...] = ()
    label_ids: tuple[tuple[int, ...], ...] = ()  # each label's tokens after a prompt, eos included
    truth: tuple[int, ...] = ()  # index of each example's reference label


def build_eval_set(codec, task: TaskData, max_len: int) -> EvalSet:
    examples, owner, truth = [], [], []
    for i, ex in enumerate(task.eval):
        if task.kind == "classification":
            labels = task.labels if ex.answer in task.labels else tuple(task.labels) + (ex.answer,)
            for label in labels:
                examples.append(replace(ex, answer=label))
                owner.append(i)
                truth.append(label == ex.answer)
        else:
            examples.append(ex)
            owner.append(i)
            truth.append(True)
    encoded = encode_examples(codec, examples, max_len)
    order = sorted(range(len(encoded)), key=lambda j: -len(encoded[j].ids))
    extra = {}
    ends = {(answer_text(e.prompt, "", e.style), e.style) for e in task.eval}
    if task.kind == "classification" and len(ends) == 1:  # every label follows every prompt alike
        labels = list(task.labels) + sorted({e.answer for e in task.eval} - set(task.labels))
        sep, style = ends.pop()
        eos = () if style == RENDERED else (codec.eos_id,)  # a rendered chat answer ends its own turn
        label_ids = [tuple(ids[: max_len - 2]) + eos for ids in codec.encode_batch([sep + label for label in labels])]
        room = max_len - max(len(x) for x in label_ids)
        prompts = [
            tuple(p[-room:]) if p else (codec.eos_id,) for p in codec.encode_batch([e.prompt for e in task.eval])
        ]
        extra = dict(
            prompts=tuple(prompts), label_ids=tuple(label_ids), truth=tuple(labels.index(e.answer) for e in task.eval)
        )
    return EvalSet(
        kind=task.kind,
        metric=ACCURACY if task.kind == "classification" else EXACT_MATCH,
        items=tuple(encoded[j] for j in order),
        example=tuple(owner[j] for j in order),
        is_truth=tuple(truth[j] for j in order),
        n_examples=len(task.eval),
        **extra,
    )


def eval_batch_size(train_batch_size: int) -> int:
    return max(16, 2 * train_batch_size)


def evaluate(call, module, eval_set: EvalSet, *, pad_id: int, device, batch_size: int, autocast) -> tuple[float, float]:
    """(per-token eval loss, metric) of `module` on the eval set."""
    if eval_set.kind == "classification" and eval_set.prompts and getattr(call, "cache_ok", True):
        try:
            return _classify_with_cache(
                call, module, eval_set, pad_id=pad_id, device=device, batch_size=batch_size, autocast=autocast
            )
        except (TypeError, AttributeError, ValueError, NotImplementedError) as e:
            log.warning("label scoring over a shared prompt cache failed (%s); scoring full sequences instead", e)
            call.cache_ok = False
    return _evaluate_sequences(
        call, module, eval_set, pad_id=pad_id, device=device, batch_size=batch_size, autocast=autocast
    )


def _evaluate_sequences(
    call, module, eval_set: EvalSet, *, pad_id: int, device, batch_size: int, autocast
) -> tuple[float, float]:
    import torch

    from prehoc_ray.runner.trainer import to_device

    n = len(eval_set.items)
    seq_nll = torch.zeros(n, dtype=torch.float64)
    seq_tokens = torch.zeros(n, dtype=torch.float64)
    seq_exact = torch.zeros(n, dtype=torch.bool)
    with torch.no_grad(), autocast:
        for start in range(0, n, batch_size):
            chunk = eval_set.items[start : start + batch_size]
            batch = to_device(collate(chunk, pad_id), device)
            nll, mask, logits = call.token_stats(module, batch)
            target = batch["labels"][:, -(batch["keep"] - 1) :]
            correct = (logits.argmax(-1) == target) | ~mask
            seq_nll[start : start + len(chunk)] = nll.sum(1).double().cpu()
            seq_tokens[start : start + len(chunk)] = mask.sum(1).double().cpu()
            seq_exact[start : start + len(chunk)] = correct.all(1).cpu()
    truth = torch.tensor(eval_set.is_truth)
    loss = float(seq_nll[truth].sum() / seq_tokens[truth].sum().clamp(min=1))
    if eval_set.kind == "classification":
        owner = torch.tensor(eval_set.example)
        # the most likely label of each example (sum of its tokens' log-likelihoods)
        best_score = torch.full((eval_set.n_examples,), float("inf"), dtype=torch.float64)
        best_truth = torch.zeros(eval_set.n_examples, dtype=torch.bool)
        for j in range(n):
            i = int(owner[j])
            if seq_nll[j] < best_score[i]:
                best_score[i], best_truth[i] = seq_nll[j], truth[j]
        metric = float(best_truth.double().mean())
    else:
        metric = float(seq_exact[truth].double().mean())
    return loss, metric


def _classify_with_cache(
    call, module, es: EvalSet, *, pad_id: int, device, batch_size: int, autocast
) -> tuple[float, float]:
    """Run each prompt once, repeat its KV cache for every label, score the label tokens."""
    import torch
    import torch.nn.functional as F

    m = len(es.label_ids)
    width = max(len(x) for x in es.label_ids)
    labels = torch.full((m, width), pad_id, dtype=torch.long)
    lmask = torch.zeros((m, width), dtype=torch.long)
    for j, ids in enumerate(es.label_ids):
        labels[j, : len(ids)] = torch.tensor(ids)
        lmask[j, : len(ids)] = 1
    labels, lmask = labels.to(device), lmask.to(device)
    # prompts per forward; the label pass repeats their cache m times, so bound per_chunk * m
    per_chunk = max(1, min(batch_size, 8 * batch_size // m))
    nll = torch.zeros((es.n_examples, m), dtype=torch.float64)
    tokens = lmask.sum(1).double().cpu()
    keep = {"logits_to_keep": 1} if call.keep else {}
    with torch.no_grad(), autocast:
        for start in range(0, es.n_examples, per_chunk):
            prompts = es.prompts[start : start + per_chunk]
            c, lp = len(prompts), max(len(p) for p in prompts)
            ids = torch.full((c, lp), pad_id, dtype=torch.long)
            mask = torch.zeros((c, lp), dtype=torch.long)
            for i, p in enumerate(prompts):
                ids[i, lp - len(p) :] = torch.tensor(p)
                mask[i, lp - len(p) :] = 1
            ids, mask = ids.to(device), mask.to(device)
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            out = module(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **keep)
            cache = out.get("cache") if "cache" in out else out.get("past_key_values")
            if cache is None or not hasattr(cache, "batch_repeat_interleave"):
                raise NotImplementedError("the model returned no repeatable KV cache")
            first = F.log_softmax(out.logits[:, -1].float(), dim=-1)[:, labels[:, 0]]  # [c, m]
            cache.batch_repeat_interleave(m)
            ids2 = labels.repeat(c, 1)
            mask2 = torch.cat([mask.repeat_interleave(m, 0), lmask.repeat(c, 1)], dim=1)
            pos2 = mask.sum(1).repeat_interleave(m)[:, None] + torch.arange(width, device=device)[None, :]
            out2 = module(
                input_ids=ids2, attention_mask=mask2, position_ids=pos2, use_cache=True, **{call.cache_kw: cache}
            )
            logp = F.log_softmax(out2.logits[:, :-1].float(), dim=-1)
            rest = logp.gather(-1, ids2[:, 1:, None]).squeeze(-1) * lmask.repeat(c, 1)[:, 1:]
            seq = first.reshape(-1) + rest.sum(1)
            nll[start : start + c] = (-seq).double().reshape(c, m).cpu()
    truth = torch.tensor(es.truth)
    rows = torch.arange(es.n_examples)
    loss = float(nll[rows, truth].sum() / tokens[truth].sum())
    metric = float((nll.argmin(dim=1) == truth).double().mean())
    return loss, metric
