"""Prompt -> answer tokenisation with the loss on the answer tokens only, and a data order that
is a pure function of (seed, step).

Sequences are LEFT-padded with explicit position ids, so that every answer ends at the last
position of the batch: the model then only needs logits for the last few positions
(`logits_to_keep`), which skips most of the LM head (about a fifth of a small model's compute
with a 49k vocabulary).

Because the batch at step s depends only on (seed, s, rank, world size), the "data-order
position" of a paused probe is its step: a resume needs no saved iterator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from prehoc_ray.runner.data import CHAT, RENDERED, SPACED, Example
from prehoc_ray.runner.errors import RunnerInputError

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    n_answer: int  # trailing tokens that are the answer (its eos included)


def answer_text(prompt: str, answer: str, style: str = SPACED) -> str:
    """The answer as it follows the prompt: for prompt/answer data a space unless the prompt ends
    in whitespace; verbatim for completions, alpaca and rendered chats."""
    if style != SPACED:
        return answer
    return answer if (not prompt or prompt[-1].isspace()) else " " + answer


def encode_examples(codec, examples: Sequence[Example], max_len: int) -> list[Encoded]:
    """prompt ids + answer ids + eos, the prompt cut from the left (its end, the question, is
    what matters) and the answer cut from the right if even it alone does not fit. A rendered
    chat answer carries the template's own end of turn: no eos is added to it."""
    if not examples:
        return []
    if any(e.style == CHAT for e in examples):
        raise RunnerInputError(
            "chat examples must be rendered with a chat template before tokenisation (runner/chat.py)"
        )
    prompt_ids = codec.encode_batch([e.prompt for e in examples])
    answer_ids = codec.encode_batch([answer_text(e.prompt, e.answer, e.style) for e in examples])
    out = []
    for e, p, a in zip(examples, prompt_ids, answer_ids):
        a = list(a)[: max_len - 2] if e.style == RENDERED and a else list(a)[: max_len - 2] + [codec.eos_id]
        p = list(p)[-(max_len - len(a)) :] if p else []
        if not p:  # at least one context token to predict the first answer token from
            p = [codec.eos_id]
        out.append(Encoded(tuple(p) + tuple(a), len(a)))
    return out


def collate(items: Sequence[Encoded], pad_id: int):
    """Left-padded tensors: input_ids, attention_mask, position_ids, labels (IGNORE outside the
    answer), plus `keep` (how many trailing positions need logits) and `tokens` (real tokens)."""
    import torch

    width = max(len(x.ids) for x in items)
    n = len(items)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    for i, x in enumerate(items):
        L = len(x.ids)
        ids = torch.tensor(x.ids, dtype=torch.long)
        input_ids[i, width - L :] = ids
        attention[i, width - L :] = 1
        labels[i, width - x.n_answer :] = ids[L - x.n_answer :]
    position_ids = (attention.cumsum(dim=1) - 1).clamp_(min=0)
    keep = max(x.n_answer for x in items) + 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": position_ids,
        "labels": labels,
        "keep": keep,
        "tokens": int(sum(len(x.ids) for x in items)),
    }


@lru_cache(maxsize=64)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(f"order:{seed}:{epoch}").shuffle(order)
    return tuple(order)


def batch_indices(n: int, batch_size: int, seed: int, step: int, rank: int = 0, world: int = 1) -> list[int]:
    """Example indices this rank trains on at `step` (0-based): the global batch of
    batch_size * world examples is a window on an endless stream of seeded epoch permutations,
    and each rank takes its own contiguous share."""
    global_bs = batch_size * world
    start = step * global_bs + rank * batch_size
    out = []
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, n)
        out.append(_epoch_order(n, seed, epoch)[i])
    return out
