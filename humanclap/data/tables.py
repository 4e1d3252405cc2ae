"""CSV and JSONL tables of the readers: records with their line numbers, and errors that name file, line and column."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from humanclap.data.pairs import DataError

Record = tuple[int, dict]
"""(line number, column -> value) of one rating."""


def read_csv_table(path: str | Path) -> tuple[list[str], list[Record]]:
    """Header and records of a CSV file, each record with the line where it starts.

    Values stay strings (ids such as RELATE's "0050" keep their zeros). Blank lines are skipped;
    an empty file, a duplicate column name or a row with the wrong number of fields is an error.
    """
    path = require_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if not any(header):
                raise DataError(f"{path}: empty file (no header row)")
            duplicates = sorted({name for name in header if header.count(name) > 1})
            if duplicates:
                raise DataError(f"{path}: duplicate column(s) {duplicates} in the header")
            records: list[Record] = []
            start = reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1
                if not values:
                    continue
                if len(values) != len(header):
                    raise DataError(
                        f"{path}, line {line}: {len(values)} fields, the header has {len(header)}"
                    )
                records.append((line, dict(zip(header, values))))
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    return header, records


def require_columns(path: str | Path, found, required, where: str = "") -> None:
    """Error listing the missing columns and the columns found."""
    missing = [name for name in required if name not in found]
    if missing:
        raise DataError(
            f"{path}{where}: missing required column(s) {missing}; columns found: {list(found)}"
        )


def require_file(path: str | Path) -> Path:
    """``path`` as a Path, or a DataError naming it if it is not a readable file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    return path


def read_jsonl_table(path: str | Path, required: Sequence[str] = ()) -> list[Record]:
    """The JSON objects of a JSONL file, each with its line; blank lines are skipped. A line that is
    not a JSON object, or lacks a ``required`` key, is an error naming the file and line."""
    path = require_file(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    records: list[Record] = []
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {line}: invalid JSON ({err.msg})") from err
        if not isinstance(obj, dict):
            raise DataError(
                f"{path}, line {line}: expected a JSON object, got {type(obj).__name__}"
            )
        require_columns(path, obj.keys(), required, f", line {line}")
        records.append((line, obj))
    return records


def read_table(path: str | Path, required: Sequence[str], what: str) -> list[Record]:
    """The records of a ``.csv`` or ``.jsonl`` table with the ``required`` columns (keys); another
    suffix is an error naming the file and ``what`` it should be (``"manifest"``, ...)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, records = read_csv_table(path)
        require_columns(path, header, required)
        return records
    if suffix == ".jsonl":
        return read_jsonl_table(path, required)
    raise DataError(
        f"{path}: unsupported {what} format {suffix or '(no extension)'!r}; use .csv or .jsonl"
    )
