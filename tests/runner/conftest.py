"""Shared fixtures for the runner tests: tiny models, tiny tasks, no network."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

# Tiny models are dominated by per-op overhead; one thread is faster on 2 cores, and much
# faster when other processes share them (OpenMP spinning).
torch.set_num_threads(1)

from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, TaskSpec  # noqa: E402
from tests.weather_data import write_weather  # noqa: E402

TINY = {"arch": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 384}


def tiny_model(**over) -> ModelSpec:
    return ModelSpec(name="tiny", tiny={**TINY, **over})


def copy_candidate(**config) -> CandidateSpec:
    task = TaskSpec(name="copy", builtin="synthetic_copy", max_train_examples=256, eval_examples=16)
    cfg = {"learning_rate": 1e-2, "batch_size": 8, "max_seq_len": 32, "full_steps": 200, **config}
    return CandidateSpec(task=task, model=tiny_model(), config=FinetuneConfig(**cfg))


@pytest.fixture(scope="session")
def make_copy_candidate():
    return copy_candidate


@pytest.fixture(scope="session")
def make_tiny_model():
    return tiny_model


@pytest.fixture(scope="session")
def weather_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "weather.jsonl"
    write_weather(path)
    return path


@pytest.fixture(scope="session")
def weather_candidate(weather_path) -> CandidateSpec:
    task = TaskSpec(name="weather", path=weather_path, eval_examples=32)
    return CandidateSpec(
        task=task,
        model=tiny_model(),
        config=FinetuneConfig(learning_rate=1e-2, batch_size=8, max_seq_len=32, full_steps=100),
    )
