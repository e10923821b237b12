"""Every kind of bad trajectory file fails with one line naming file, column, row, expectation."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prehoc_ray.io import TrajectoryError, read_trajectories

GOOD_HEADER = "candidate,step,value,seed,final,static_x\n"


def _csv(tmp_path: Path, body: str, name: str = "trajectories.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def _error(path: Path) -> str:
    with pytest.raises(TrajectoryError) as info:
        read_trajectories(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    assert isinstance(info.value, ValueError)
    return message


CSV_CASES = {
    "step negative": (
        "candidate,step,value\na,1,0.1\na,2,0.2\na,-3,0.3\n",
        "column 'step' row 3: expected a number > 0, got -3",
    ),
    "step zero": (
        "candidate,step,value\na,0,0.1\n",
        "column 'step' row 1: expected a number > 0, got 0",
    ),
    "step not a number": (
        "candidate,step,value\na,1,0.1\na,ten,0.2\n",
        "column 'step' row 2: expected a number > 0, got 'ten'",
    ),
    "step empty": (
        "candidate,step,value\na,1,0.1\na,,0.2\n",
        "column 'step' row 2: expected a number > 0, got an empty cell",
    ),
    "step nan": (
        "candidate,step,value\na,1,0.1\na,nan,0.2\n",
        "column 'step' row 2: expected a number > 0, got nan",
    ),
    "step inf": (
        "candidate,step,value\na,inf,0.1\n",
        "column 'step' row 1: expected a number > 0, got inf",
    ),
    "value nan": (
        "candidate,step,value\na,1,0.1\na,2,NaN\n",
        "column 'value' row 2: expected a finite number",
    ),
    "value inf": (
        "candidate,step,value\na,1,-inf\n",
        "column 'value' row 1: expected a finite number (the metric), got -inf",
    ),
    "value text": (
        "candidate,step,value\na,1,0.1\na,2,high\n",
        "column 'value' row 2: expected a finite number (the metric), got 'high'",
    ),
    "value empty": (
        "candidate,step,value\na,1,\n",
        "column 'value' row 1: expected a finite number (the metric), got an empty cell",
    ),
    "candidate empty": (
        "candidate,step,value\na,1,0.1\n,2,0.2\n",
        "column 'candidate' row 2: expected a non-empty candidate id",
    ),
    "seed fractional": (
        "candidate,step,value,seed\na,1,0.1,0\na,2,0.2,1.5\n",
        "column 'seed' row 2: expected an integer seed, got 1.5",
    ),
    "seed text": (
        "candidate,step,value,seed\na,1,0.1,x\n",
        "column 'seed' row 1: expected an integer seed, got 'x'",
    ),
    "static text": (
        "candidate,step,value,static_size\na,1,0.1,7\nb,1,0.1,big\n",
        "column 'static_size' row 2: expected a finite number or an empty cell, got 'big'",
    ),
    "static varies within candidate": (
        "candidate,step,value,static_x\na,1,0.1,7\na,2,0.2,8\n",
        "column 'static_x' row 2: expected the same static_x for all rows of candidate 'a' (row 1 has 7.0), got 8.0",
    ),
    "final inconsistent": (
        "candidate,step,value,seed,final\na,1,0.1,0,0.9\na,2,0.2,0,0.9\nb,1,0.1,0,0.5\na,3,0.3,0,0.8\n",
        "column 'final' row 4: expected the same final for all rows of candidate 'a' seed 0 (row 1 has 0.9), got 0.8",
    ),
    "final unknown then known": (
        "candidate,step,value,seed,final\na,1,0.1,0,\na,2,0.2,0,0.9\n",
        "column 'final' row 2: expected the same final for all rows of candidate 'a' seed 0 (row 1 has nan (unknown)), got 0.9",
    ),
    "final inf": (
        "candidate,step,value,final\na,1,0.1,inf\n",
        "column 'final' row 1: expected a finite number or an empty cell, got inf",
    ),
    "horizon negative": (
        "candidate,step,value,horizon\na,1,0.1,-5\n",
        "column 'horizon' row 1: expected a number > 0 or an empty cell, got -5",
    ),
    "duplicate step": (
        "candidate,step,value,seed\na,1,0.1,0\na,2,0.2,0\na,1,0.1,1\na,2,0.25,0\n",
        "column 'step' row 4: expected one row per (candidate, seed, step) (row 2 already has candidate 'a' seed 0 step 2.0), got a duplicate",
    ),
    "duplicate with default seed": (
        "candidate,step,value\na,1,0.1\nb,1,0.1\na,1.0,0.2\n",
        "column 'step' row 3: expected one row per (candidate, seed, step) (row 1 already has",
    ),
    "group changes within candidate": (
        "candidate,step,value,group\na,1,0.1,x\na,2,0.2,y\n",
        "column 'group' row 2: expected the same group for all rows of candidate 'a' (row 1 has 'x'), got 'y'",
    ),
    "missing step column": ("candidate,value\na,0.1\n", "missing required column 'step'"),
    "missing value column with case hint": (
        "candidate,step,Value\na,1,0.1\n",
        "missing required column 'value' (found 'Value': names are case-sensitive)",
    ),
    "empty table": ("candidate,step,value\n", "the table has no data rows"),
    "duplicate column": ("candidate,step,value,step\na,1,0.1,2\n", "column 'step' appears twice"),
}


@pytest.mark.parametrize("body, expected", CSV_CASES.values(), ids=CSV_CASES.keys())
def test_bad_csv(tmp_path: Path, body: str, expected: str) -> None:
    path = _csv(tmp_path, body)
    message = _error(path)
    assert f"{path}: " in message
    assert expected in message, message


def test_first_offending_row_is_reported(tmp_path: Path) -> None:
    # row 2 has a text step, row 3 a negative one: the earlier row wins
    path = _csv(tmp_path, "candidate,step,value\na,1,0.1\na,x,0.2\na,-1,0.3\n")
    assert "row 2" in _error(path)
    path = _csv(tmp_path, "candidate,step,value\na,1,0.1\na,-1,0.2\na,x,0.3\n")
    assert "row 2: expected a number > 0, got -1" in _error(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.csv")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    assert "is a directory" in _error(tmp_path / "d.csv")


def test_unknown_extension(tmp_path: Path) -> None:
    path = _csv(tmp_path, GOOD_HEADER, name="t.xlsx")
    message = _error(path)
    assert "unknown file type '.xlsx'" in message and ".parquet" in message


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    assert "cannot read as parquet" in _error(path)


def test_truncated_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"candidate": ["a"], "step": [1.0], "value": [0.1]}), path)
    path.write_bytes(path.read_bytes()[:-20])
    assert "cannot read as parquet" in _error(path)


def test_csv_not_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"candidate,step,value\na,1,0.1,9,9\n")
    assert "cannot read as csv" in _error(path)


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"candidate": "a", "step": 1, "value": 0.1}\n{"candidate": "a", "step": 2,\n')
    assert "line 2: invalid JSON" in _error(path)


def test_jsonl_type_change_names_row(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"candidate": "a", "step": 1, "value": 0.1}\n'
        '{"candidate": "a", "step": 2, "value": 0.2}\n'
        '{"candidate": "a", "step": "three", "value": 0.3}\n'
    )
    assert "column 'step' row 3: expected a number > 0, got 'three'" in _error(path)


def test_jsonl_bool_in_numeric_column(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"candidate": "a", "step": 1, "value": true}\n')
    assert "column 'value' row 1: expected a finite number (the metric), got True" in _error(path)


def test_parquet_string_in_numeric_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"candidate": ["a", "a"], "step": ["1", "two"], "value": [0.1, 0.2]}), path)
    assert "column 'step' row 2: expected a number > 0, got 'two'" in _error(path)


def test_parquet_seed_float_nonint(tmp_path: Path) -> None:
    path = tmp_path / "t.pq"
    pq.write_table(pa.table({"candidate": ["a"], "step": [1.0], "value": [0.1], "seed": [0.5]}), path)
    assert "column 'seed' row 1: expected an integer seed, got 0.5" in _error(path)


def test_empty_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, "")
    message = _error(path)
    assert "cannot read as csv" in message or "no data rows" in message


def test_json_array_not_objects(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("[1, 2]")
    assert "row 1: expected a JSON object" in _error(path)


# ---- hostile files: bounded work, the row named, none of the file's text echoed ----------------

SECRET = "PLANTED-SECRET-x81"


def _quiet_error(path: Path) -> str:
    message = _error(path)
    assert SECRET not in message, message
    return message


def test_a_step_far_beyond_any_run_is_refused_with_its_row(tmp_path: Path) -> None:
    path = _csv(tmp_path, "candidate,step,value\na,10,0.1\na,20,0.2\na,1e300,0.3\n")
    assert "column 'step' row 3: expected a number > 0 and at most 1e+12, got 1e+300" in _error(path)


def test_steps_past_the_horizon_are_named_by_the_analysis_check(tmp_path: Path) -> None:
    path = _csv(tmp_path, "candidate,step,value,horizon\na,10,0.1,100\na,20,0.2,100\nb,10,0.1,100\nb,5000,0.3,100\n")
    table = read_trajectories(path)  # a table may hold them ...
    with pytest.raises(TrajectoryError) as info:  # ... an analysis may not
        table.check_within_horizon()
    assert str(info.value) == f"{path}: column 'step' row 4: expected a step <= its horizon (100), got 5000"
    with pytest.raises(TrajectoryError, match=r"row 2: expected a step <= --horizon \(15\), got 20"):
        table.check_within_horizon(15.0)
    table.check_within_horizon(5000.0)


def test_a_row_with_extra_cells_names_the_line_not_its_text(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"candidate,step,value\na,1,0.1\na,2,0.2,{SECRET}\n")
    assert "cannot read as csv: line 3: expected 3 cells (as many as the header has), got 4" in _quiet_error(path)


def test_a_foreign_header_is_listed_short(tmp_path: Path) -> None:
    path = _csv(
        tmp_path, f"root:$6$salt${'h' * 40}{SECRET}:19000:0:99999:7:::\n" + "".join(f"u{i}:x\n" for i in range(5))
    )
    message = _quiet_error(path)
    assert "missing required column 'candidate'" in message and "found root:$6$salt$hhh" in message


def test_a_long_cell_is_cut_short(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"candidate,step,value\na,1,{'v' * 80}{SECRET}\n")
    message = _quiet_error(path)
    assert "column 'value' row 1: expected a finite number (the metric), got 'vvvv" in message
    assert "v" * 50 not in message


def test_text_that_is_not_utf8_names_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b'{"candidate": "a", "step": 1, "value": 0.1}\n{"candidate": "\xff'
        + SECRET.encode()
        + b'", "step": 2, "value": 0.2}\n'
    )
    message = _quiet_error(path)
    assert "column 'candidate' row 2: expected UTF-8 text" in message or "not UTF-8 text" in message


@pytest.mark.parametrize(
    "name,text,line",
    [
        ("t.json", "[" * 1000 + "]" * 1000, 1),
        (
            "t.jsonl",
            '{"candidate": "a", "step": 1, "value": 0.1}\n{"candidate": "a", "step": 2, "value": '
            + '{"x": ' * 1000
            + "1"
            + "}" * 1000
            + "}\n",
            2,
        ),
    ],
)
def test_deep_json_is_refused_before_a_parser_recurses(tmp_path: Path, name: str, text: str, line: int) -> None:
    # (the corpus in tests/malformed runs the 100,000-deep one that crashes pyarrow, in a subprocess)
    path = tmp_path / name
    path.write_text(text)
    assert f"line {line}: JSON nested more than 64 levels deep" in _error(path)


def test_brackets_in_strings_and_escaped_quotes_do_not_count(tmp_path: Path, monkeypatch) -> None:
    import prehoc_ray.io.formats as formats

    ids = ["[" * 100, 'q\\"' + "{" * 100, "\\\\" + "]" * 3, 'e\\\\\\"[[']
    body = "".join(
        f'{{"candidate": "{c}", "step": {k + 1}, "value": 0.5, "extra": [[1], {{"a": [2]}}]}}\n'
        for k, c in enumerate(ids)
    )
    path = tmp_path / "t.jsonl"
    path.write_text(body)
    for chunk in (1, 2, 3, 7, 1 << 20):  # state (depth, string, backslashes) carried across chunks
        monkeypatch.setattr(formats, "_SCAN_CHUNK", chunk)
        table = read_trajectories(path)
        assert len(table) == 4 and table.candidate[0] == "[" * 100
    deep = path.read_text() + '{"candidate": "z", "step": 1, "value": ' + "[" * 70 + "1" + "]" * 70 + "}\n"
    path.write_text(deep)
    for chunk in (3, 1 << 20):
        monkeypatch.setattr(formats, "_SCAN_CHUNK", chunk)
        assert "line 5: JSON nested more than 64 levels deep" in _error(path)
