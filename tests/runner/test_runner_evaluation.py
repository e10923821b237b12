"""Evaluation: label scoring over a shared prompt cache equals scoring full sequences."""

from __future__ import annotations

import pytest
import torch

from prehoc_ray.runner.evaluation import _evaluate_sequences, evaluate
from prehoc_ray.runner.probe import build_lora_model, prepare


def _kw(prep):
    return dict(
        pad_id=prep.base.codec.pad_id,
        device=torch.device("cpu"),
        batch_size=16,
        autocast=torch.autocast("cpu", enabled=False),
    )


def test_cached_label_scoring_equals_full_sequences(weather_candidate):
    prep = prepare(weather_candidate)
    assert prep.eval_set.prompts and len(prep.eval_set.label_ids) == 2
    model = build_lora_model(prep.base, weather_candidate.config, seed=3)
    with torch.no_grad():  # make the adapters matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    model.eval()
    cached = evaluate(prep.call, model, prep.eval_set, **_kw(prep))
    full = _evaluate_sequences(prep.call, model, prep.eval_set, **_kw(prep))
    assert cached[0] == pytest.approx(full[0], abs=1e-4)
    assert cached[1] == full[1]


def test_generation_exact_match_is_zero_for_an_untrained_model(make_copy_candidate):
    cand = make_copy_candidate()
    prep = prepare(cand)
    loss, em = evaluate(prep.call, prep.base.model, prep.eval_set, **_kw(prep))
    assert em == 0.0 and loss > 1.0
