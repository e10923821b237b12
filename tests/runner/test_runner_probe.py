"""Real tiny LoRA probe fine-tunes: determinism, resume, backends, streaming rows, errors."""

from __future__ import annotations

import json
import math

import pytest

from prehoc_ray import types as T
from prehoc_ray.runner.errors import CheckpointMismatchError, ProbeDivergedError
from prehoc_ray.runner.probe import ProbeRequest, ProbeResult, run_probe
from prehoc_ray.spec.candidate import ProbeSettings

ROW_KEYS = {
    T.CANDIDATE,
    T.SEED,
    T.STEP,
    T.VALUE,
    T.EVAL_LOSS,
    T.TRAIN_LOSS,
    T.GRAD_NORM,
    T.WALL_S,
    T.TOKENS,
    T.PROBE_ID,
}
CURVE_KEYS = (T.VALUE, T.EVAL_LOSS, T.TRAIN_LOSS, T.GRAD_NORM, T.TOKENS)
TORCH = ProbeSettings(backend="torch", eval_every=10)
DEEPSPEED = ProbeSettings(backend="deepspeed", eval_every=10, zero_stage=0, precision="fp32")


def curve(rows):
    return [(r[T.STEP],) + tuple(r[k] for k in CURVE_KEYS) for r in rows]


def assert_same_curve(a, b, tol=0.0):
    assert [r[T.STEP] for r in a] == [r[T.STEP] for r in b]
    for ra, rb in zip(a, b):
        for k in CURVE_KEYS:
            assert ra[k] == pytest.approx(rb[k], abs=tol, rel=tol), (ra[T.STEP], k, ra[k], rb[k])


def probe(cand, seed, target, path, settings=TORCH, probe_id="p", on_point=None) -> ProbeResult:
    return run_probe(ProbeRequest(cand, seed, target, path, settings, probe_id), on_point=on_point)


@pytest.fixture(scope="module")
def cand(make_copy_candidate):
    return make_copy_candidate()


@pytest.fixture(scope="module")
def torch_runs(cand, tmp_path_factory):
    """Every torch-backend run the tests below compare, computed once."""
    root = tmp_path_factory.mktemp("ckpt")
    emitted = []
    out = {"emitted": emitted}
    out["a"] = probe(cand, 0, 40, root / "a", on_point=emitted.append, probe_id="a")
    out["b"] = probe(cand, 0, 40, root / "b")
    out["seed1"] = probe(cand, 1, 40, root / "c")
    out["first"] = probe(cand, 0, 20, root / "d")
    out["resumed"] = probe(cand, 0, 40, root / "d", probe_id="d2")
    out["root"] = root
    return out


def test_rows_are_emitted_as_they_happen_in_the_row_format(torch_runs, cand):
    emitted, a = torch_runs["emitted"], torch_runs["a"]
    assert [r[T.STEP] for r in emitted] == [10, 20, 30, 40]
    assert emitted == a.rows
    for r in emitted:
        assert set(r) == ROW_KEYS
        assert r[T.CANDIDATE] == cand.id and r[T.SEED] == 0 and r[T.PROBE_ID] == "a"
        assert all(math.isfinite(r[k]) for k in CURVE_KEYS + (T.WALL_S,))
        assert 0.0 <= r[T.VALUE] <= 1.0
    assert [r[T.TOKENS] for r in emitted] == sorted(r[T.TOKENS] for r in emitted)
    assert [r[T.WALL_S] for r in emitted] == sorted(r[T.WALL_S] for r in emitted)


def test_cost_accounting(torch_runs, cand):
    a = torch_runs["a"]
    assert a.steps_run == 40 and a.start_step == 0 and a.end_step == 40
    assert a.tokens == a.rows[-1][T.TOKENS]
    assert a.tokens_per_step == pytest.approx(a.tokens / 40)
    assert 0 < a.seconds_per_step < a.seconds
    assert a.projected_full_cost_s == pytest.approx(a.seconds_per_step * cand.config.full_steps)
    assert a.metric == "exact_match" and a.backend == "torch"


def test_one_time_setup_is_measured_apart_from_the_probe(cand, tmp_path):
    from prehoc_ray.runner.probe import clear_caches

    clear_caches()  # as in a fresh worker: data, base model and engine all built by the first probe
    first = probe(cand, 0, 20, tmp_path / "a")
    again = probe(cand, 1, 20, tmp_path / "b")
    assert 0 < first.setup_seconds < first.seconds
    # the second probe of the process finds everything cached: its set-up is a few lookups
    assert again.setup_seconds < min(first.setup_seconds, 0.25 * again.seconds)
    # and a probe whose checkpoint is already at its target measures its set-up the same way
    done = probe(cand, 1, 20, tmp_path / "b")
    assert done.steps_run == 0 and 0 <= done.setup_seconds <= done.seconds


def test_same_seed_same_curve(torch_runs):
    assert_same_curve(torch_runs["a"].rows, torch_runs["b"].rows)


def test_different_seed_different_curve(torch_runs):
    a, c = torch_runs["a"].rows, torch_runs["seed1"].rows
    assert [r[T.EVAL_LOSS] for r in a] != [r[T.EVAL_LOSS] for r in c]
    assert [r[T.TRAIN_LOSS] for r in a] != [r[T.TRAIN_LOSS] for r in c]


def test_resume_equals_uninterrupted(torch_runs):
    first, resumed = torch_runs["first"], torch_runs["resumed"]
    assert first.end_step == 20 and resumed.start_step == 20 and resumed.steps_run == 20
    assert [r[T.STEP] for r in resumed.new_rows] == [30, 40]
    assert resumed.new_rows[0][T.PROBE_ID] == "d2"
    assert_same_curve(resumed.rows, torch_runs["a"].rows, tol=1e-6)


def test_loss_decreases_on_the_synthetic_task(torch_runs, cand):
    from prehoc_ray.runner.static import compute_static_signals

    rows = torch_runs["a"].rows
    zero_shot = compute_static_signals(cand)["static_zero_shot_loss"]
    assert rows[-1][T.EVAL_LOSS] < rows[0][T.EVAL_LOSS] < zero_shot
    assert rows[-1][T.TRAIN_LOSS] < rows[0][T.TRAIN_LOSS]


def test_checkpoint_at_or_past_target_returns_rows_without_training(torch_runs, cand):
    root = torch_runs["root"]
    again = probe(cand, 0, 40, root / "a")
    assert again.steps_run == 0 and again.rows == torch_runs["a"].rows
    shorter = probe(cand, 0, 25, root / "a")
    assert shorter.steps_run == 0 and [r[T.STEP] for r in shorter.rows] == [10, 20]
    assert shorter.seconds_per_step == pytest.approx(torch_runs["a"].seconds_per_step)


def test_off_grid_pause_keeps_the_curve(cand, torch_runs, tmp_path):
    """Pausing between evaluation points adds a row there, and the rows after it are those
    of the uninterrupted run (the train-loss window is carried in the checkpoint)."""
    p1 = probe(cand, 0, 25, tmp_path)
    assert [r[T.STEP] for r in p1.rows] == [10, 20, 25]
    p2 = probe(cand, 0, 40, tmp_path)
    assert [r[T.STEP] for r in p2.new_rows] == [30, 40]
    assert_same_curve(p2.new_rows, torch_runs["a"].rows[2:], tol=1e-6)


def test_checkpoint_from_another_setup_is_refused(cand, torch_runs):
    changed = cand.model_copy(update={"config": cand.config.model_copy(update={"learning_rate": 0.02})})
    with pytest.raises(CheckpointMismatchError, match="candidate_sha"):
        probe(changed, 0, 50, torch_runs["root"] / "a")


def test_divergence_raises_after_emitting_earlier_rows(cand, tmp_path, monkeypatch):
    from prehoc_ray.runner import trainer as eng

    calls = {"n": 0}
    real = eng.ModelCall.loss

    def poisoned(self, module, batch):
        loss = real(self, module, batch)
        if module.training:
            calls["n"] += 1
            if calls["n"] >= 13:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(eng.ModelCall, "loss", poisoned)
    emitted = []
    with pytest.raises(ProbeDivergedError, match="step 13") as info:
        probe(cand, 0, 30, tmp_path, ProbeSettings(backend="torch", eval_every=5), on_point=emitted.append)
    assert [r[T.STEP] for r in emitted] == [5, 10]
    assert info.value.step == 13 and [r[T.STEP] for r in info.value.rows] == [5, 10]
    assert not any(tmp_path.rglob("latest.json"))  # nothing checkpointed from a NaN state


def test_classification_probe_reports_accuracy(weather_candidate, tmp_path):
    res = probe(weather_candidate, 0, 30, tmp_path, ProbeSettings(backend="torch", eval_every=15))
    assert res.metric == "accuracy"
    assert [r[T.STEP] for r in res.rows] == [15, 30]
    # 32 eval examples: accuracy is a multiple of 1/32
    for r in res.rows:
        assert r[T.VALUE] * 32 == pytest.approx(round(r[T.VALUE] * 32))


def test_modules_to_save_trains_the_output_head_of_a_random_model(weather_candidate, tmp_path):
    # A model built from a config starts random: LoRA alone barely moves its frozen output head,
    # while training lm_head in full (peft's modules_to_save) fits the answers quickly.
    with_head = weather_candidate.model_copy(
        update={"config": weather_candidate.config.model_copy(update={"modules_to_save": ["lm_head"]})}
    )
    plain = probe(weather_candidate, 0, 30, tmp_path / "plain", ProbeSettings(backend="torch", eval_every=30))
    head = probe(with_head, 0, 30, tmp_path / "head", ProbeSettings(backend="torch", eval_every=30))
    assert head.rows[-1][T.EVAL_LOSS] < 0.5 * plain.rows[-1][T.EVAL_LOSS]


# --------------------------------------------------------------------------------------------
# DeepSpeed (slow: the first engine in a fresh environment builds a small op, ~25-60 s once)


@pytest.fixture(scope="module")
def ds_runs(cand, tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    return {
        "full": probe(cand, 0, 40, root / "full", DEEPSPEED),
        "first": probe(cand, 0, 20, root / "resume", DEEPSPEED),
        "resumed": probe(cand, 0, 40, root / "resume", DEEPSPEED),
        "root": root,
    }


@pytest.mark.slow
def test_deepspeed_and_torch_compute_the_same_curve(ds_runs, torch_runs):
    assert ds_runs["full"].backend == "deepspeed"
    assert_same_curve(ds_runs["full"].rows, torch_runs["a"].rows, tol=1e-5)


@pytest.mark.slow
def test_deepspeed_resume_equals_uninterrupted(ds_runs):
    assert ds_runs["resumed"].start_step == 20
    assert_same_curve(ds_runs["resumed"].rows, ds_runs["full"].rows, tol=1e-6)
    meta_files = list((ds_runs["root"] / "resume").rglob("meta.json"))
    assert len(meta_files) == 1 and json.loads(meta_files[0].read_text())["step"] == 40


@pytest.mark.slow
def test_deepspeed_zero2_matches(cand, torch_runs, tmp_path):
    res = probe(
        cand, 0, 10, tmp_path, ProbeSettings(backend="deepspeed", eval_every=10, zero_stage=2, precision="fp32")
    )
    assert_same_curve(res.rows, torch_runs["a"].rows[:1], tol=1e-5)


@pytest.mark.slow
def test_resuming_with_another_backend_is_refused(cand, ds_runs):
    with pytest.raises(CheckpointMismatchError, match="backend"):
        probe(cand, 0, 50, ds_runs["root"] / "full", TORCH)


@pytest.mark.slow
def test_deepspeed_classification_matches_torch(weather_candidate, tmp_path):
    ds = probe(
        weather_candidate, 0, 10, tmp_path / "ds", ProbeSettings(backend="deepspeed", eval_every=10, precision="fp32")
    )
    pt = probe(weather_candidate, 0, 10, tmp_path / "pt", ProbeSettings(backend="torch", eval_every=10))
    assert_same_curve(ds.rows, pt.rows, tol=1e-5)


def test_dropout_is_active_in_training(make_copy_candidate, tmp_path):
    a = probe(
        make_copy_candidate(lora_dropout=0.0), 0, 10, tmp_path / "a", ProbeSettings(backend="torch", eval_every=10)
    )
    b = probe(
        make_copy_candidate(lora_dropout=0.5), 0, 10, tmp_path / "b", ProbeSettings(backend="torch", eval_every=10)
    )
    assert a.rows[0][T.TRAIN_LOSS] != b.rows[0][T.TRAIN_LOSS]
