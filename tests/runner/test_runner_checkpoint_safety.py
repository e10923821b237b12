"""Checkpoints live in a shared run directory: resuming must never unpickle what someone else
wrote there, follow a pointer out of the probe's directory, or load a file the writer did not
record (issue 14, item 5). Real tiny probes on both backends."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import pytest
import torch

from prehoc_ray.runner import checkpoint as ck
from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.runner.probe import ProbeRequest, run_probe
from prehoc_ray.spec.candidate import ProbeSettings

TORCH = ProbeSettings(backend="torch", eval_every=5)
DEEPSPEED = ProbeSettings(backend="deepspeed", eval_every=5, zero_stage=0, precision="fp32")
BACKENDS = {"torch": TORCH, "deepspeed": DEEPSPEED}


class Payload:
    """What an attacker would put in a checkpoint: unpickling it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def probe(cand, target: int, root: Path, settings: ProbeSettings):
    return run_probe(ProbeRequest(cand, 0, target, root, settings, "p"))


def step_dir_of(pdir: Path) -> Path:
    return pdir / json.loads((pdir / ck.LATEST).read_text())["dir"]


def weights_file(step_dir: Path) -> Path:
    """The file a resume reads the trained weights from, whichever backend wrote it."""
    found = sorted(
        p for p in step_dir.rglob("*") if p.is_file() and ("model_states" in p.name or p.name == "torch_state.pt")
    )
    assert found, list(step_dir.rglob("*"))
    return found[0]


def rewrite_pointer_digest(pdir: Path, path: Path) -> None:
    """An attacker who can write the file can write the pointer too: record the new digest."""
    pointer = pdir / ck.LATEST
    doc = json.loads(pointer.read_text())
    if "files" in doc:
        rel = path.relative_to(pdir / doc["dir"]).as_posix()
        doc["files"][rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        pointer.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def cand(make_copy_candidate):
    return make_copy_candidate()


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_pickled_payload_in_a_checkpoint_is_refused_and_never_runs(cand, tmp_path, backend):
    root = tmp_path / "ckpt"
    probe(cand, 5, root, BACKENDS[backend])
    pdir = ck.probe_dir(root, cand.id, 0)
    target = weights_file(step_dir_of(pdir))
    marker = tmp_path / "pwned"
    torch.save({"module": Payload(marker), "trainable": Payload(marker)}, target)
    rewrite_pointer_digest(pdir, target)
    with pytest.raises(RunnerInputError) as err:
        probe(cand, 10, root, BACKENDS[backend])
    assert not marker.exists(), "the checkpoint's pickle ran"
    msg = str(err.value)
    assert "\n" not in msg and target.name in msg, msg


@pytest.mark.slow
def test_a_file_changed_after_the_writer_recorded_it_is_refused(cand, tmp_path):
    root = tmp_path / "ckpt"
    probe(cand, 5, root, TORCH)
    pdir = ck.probe_dir(root, cand.id, 0)
    target = weights_file(step_dir_of(pdir))
    state = torch.load(target, weights_only=True)
    state["trainable"] = {k: torch.zeros_like(v) for k, v in state["trainable"].items()}
    torch.save(state, target)  # plain tensors, but not what the writer saved
    with pytest.raises(RunnerInputError, match="sha256") as err:
        probe(cand, 10, root, TORCH)
    assert "\n" not in str(err.value) and target.name in str(err.value)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_pointer_that_leaves_the_probe_directory_is_refused(cand, tmp_path, how):
    root = tmp_path / "run" / "checkpoints"
    probe(cand, 5, root, TORCH)
    pdir = ck.probe_dir(root, cand.id, 0)
    real = step_dir_of(pdir)
    outside = tmp_path / "elsewhere" / real.name
    shutil.copytree(real, outside)
    pointer = pdir / ck.LATEST
    doc = json.loads(pointer.read_text())
    if how == "dotdot":
        doc["dir"] = str(Path("..", "..", "..", "..", "elsewhere", real.name))
    elif how == "absolute":
        doc["dir"] = str(outside)
    else:
        shutil.rmtree(real)
        real.symlink_to(outside, target_is_directory=True)
    pointer.write_text(json.dumps(doc))
    with pytest.raises(RunnerInputError, match="latest.json") as err:
        probe(cand, 10, root, TORCH)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_resume_reproduces_from_private_recorded_checkpoints(cand, tmp_path, backend):
    settings = BACKENDS[backend]
    full = probe(cand, 10, tmp_path / "full", settings)
    root = tmp_path / "resume"
    probe(cand, 5, root, settings)
    resumed = probe(cand, 10, root, settings)
    assert resumed.start_step == 5 and [r["step"] for r in resumed.new_rows] == [10]
    for a, b in zip(resumed.rows, full.rows):
        for k in ("value", "eval_loss", "train_loss", "grad_norm", "tokens"):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-6), (a["step"], k)
    # what the runner creates is owner-only, and the pointer records every file it wrote
    pdir = ck.probe_dir(root, cand.id, 0)
    for d in [root, pdir.parent, pdir, *[p for p in pdir.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    doc = json.loads((pdir / ck.LATEST).read_text())
    step = pdir / doc["dir"]
    on_disk = {
        p.relative_to(step).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in step.rglob("*")
        if p.is_file()
    }
    assert doc["files"] == on_disk and ck.META in on_disk
