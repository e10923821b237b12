"""`prehoc-ray history import`'s front: which reader a SOURCE needs, and the import as a whole.

A source is named by a path, optionally prefixed with its kind (`tune:`, `hf:`, `tracker:`)
when the guess would be wrong: a file is a tracker export; a directory with trial
directories (result.json / progress.csv / params.json) is a Ray Tune experiment; one with
trainer_state.json (itself or in checkpoint-*/) is a Trainer output directory, or a
directory of them. Tune is tried first because a Tune trial that ran a Trainer holds both.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from prehoc_ray.io.history_assemble import assemble
from prehoc_ray.io.history_hf import is_hf_dir, read_hf
from prehoc_ray.io.history_runs import HistoryImportError, ImportedRun, ImportOptions, SourceReport
from prehoc_ray.io.history_tracker import read_tracker
from prehoc_ray.io.history_tune import read_tune, trial_dirs

KINDS = ("tune", "hf", "tracker")
_EXPECTED = "a Ray Tune experiment directory, a Hugging Face Trainer output directory or a tracker export (.csv, .jsonl, .parquet)"


def source_kind(source: str) -> tuple[str, Path]:
    """(kind, path) of one SOURCE argument; HistoryImportError when it is neither."""
    kind, sep, rest = source.partition(":")
    if sep and kind in KINDS:
        path = Path(rest)
        if not path.exists():
            raise HistoryImportError(f"{source}: not found; expected {_EXPECTED}")
        if kind == "tracker" and path.is_dir():
            raise HistoryImportError(
                f"{source}: is a directory; expected a tracker export file (.csv, .jsonl, .parquet)"
            )
        if kind != "tracker" and not path.is_dir():
            raise HistoryImportError(
                f"{source}: is a file; expected a directory ({'Ray Tune experiment' if kind == 'tune' else 'Trainer output_dir'})"
            )
        return kind, path
    path = Path(source)
    if not path.exists():
        raise HistoryImportError(f"{source}: not found; expected {_EXPECTED}")
    if path.is_file():
        return "tracker", path
    if trial_dirs(path):
        return "tune", path
    if is_hf_dir(path):
        return "hf", path
    raise HistoryImportError(
        f"{source}: a directory with no Ray Tune trial (result.json, progress.csv, params.json) and no Trainer "
        f"trainer_state.json in it or one level down; expected {_EXPECTED}"
    )


def check_options(options: ImportOptions, kinds: list[str]) -> None:
    """Options that contradict each other or the sources, as one-line errors."""
    if options.horizon is not None and not (math.isfinite(options.horizon) and options.horizon > 0):
        raise HistoryImportError(f"--horizon: expected a number of steps > 0, got {options.horizon:g}")
    if options.group is not None and options.group_by is not None:
        raise HistoryImportError(
            "--group and --group-by: expected one of them (a constant group name, or the key that holds it)"
        )
    if options.column_map and "tracker" not in kinds:
        raise HistoryImportError(
            "--map: applies to tracker exports only, and no SOURCE is one (Tune and Trainer sources take --metric)"
        )


def read_sources(sources: list[str], options: ImportOptions) -> tuple[list[ImportedRun], list[SourceReport]]:
    """Every run of every source, and one report per source (in the order given)."""
    if not sources:
        raise HistoryImportError(f"no SOURCE given; expected {_EXPECTED}")
    located = [source_kind(s) for s in sources]
    check_options(options, [k for k, _ in located])
    readers = {"tune": read_tune, "hf": read_hf, "tracker": read_tracker}
    runs: list[ImportedRun] = []
    reports: list[SourceReport] = []
    for kind, path in located:
        got, report = readers[kind](path, options)
        runs += got
        reports.append(report)
    return runs, reports


def import_history(sources: list[str], options: ImportOptions) -> tuple[pa.Table, list[SourceReport]]:
    """The history table of `sources` (the format `history:` and `prehoc-ray analyze` read)
    and what each source gave. Call `read_sources` then `assemble` to keep the reports when
    nothing is left to write."""
    runs, reports = read_sources(sources, options)
    return assemble(runs, options), reports
