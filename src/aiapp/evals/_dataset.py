"""Eval datasets: JSONL, CSV or inline rows, mapped onto :class:`Case` by a field mapping.

Every problem names the file and line: a malformed JSON line, a missing input column, a binary
file. Huge files are streamed, not slurped; ``limit``/``sample`` cut them down reproducibly.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aiapp.errors import InputError
from aiapp.evals._score import Case


class FieldMap(BaseModel):
    """Which columns of a row are the id, the input, the expected answer and the metadata.

    ``input`` may name one column (the question) or several (prompt variables). ``metadata``
    lists extra columns to keep; by default every other column is kept.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = "id"
    input: str | list[str] = "question"
    expected: str | None = "answer"
    metadata: list[str] | None = None


class DatasetSpec(BaseModel):
    """Where a suite's cases come from."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    format: str | None = None
    inline: list[dict[str, Any]] | None = None
    fields: FieldMap = Field(default_factory=FieldMap)
    limit: int | None = Field(default=None, gt=0)


def load_cases(
    spec: DatasetSpec,
    *,
    base_dir: Path,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[Case]:
    """Load a dataset's cases.

    Args:
        spec: The dataset spec from a suite file.
        base_dir: Relative paths resolve against this (the suite file's folder).
        limit: Keep the first ``limit`` cases (after ``spec.limit``).
        sample: Keep a reproducible random sample of this many cases.
        seed: Seed for ``sample``.
    """
    if (spec.path is None) == (spec.inline is None):
        raise InputError("a dataset needs exactly one of `path` or `inline`")
    cap = min(x for x in (spec.limit, limit) if x is not None) if (spec.limit or limit) else None
    rows: Iterator[tuple[str, int, dict[str, Any]]]
    if spec.inline is not None:
        rows = (("inline", i + 1, row) for i, row in enumerate(spec.inline))
    else:
        path = Path(spec.path or "")
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if not path.is_file():
            raise InputError(f"{path}: dataset file not found")
        fmt = (spec.format or path.suffix.lstrip(".")).lower()
        if fmt in ("jsonl", "ndjson"):
            rows = _jsonl(path)
        elif fmt == "csv":
            rows = _csv(path)
        elif fmt == "json":
            rows = _json(path)
        else:
            raise InputError(f"{path}: unknown dataset format {fmt!r} (use jsonl, csv or json)")
    cases: list[Case] = []
    ids: set[str] = set()
    for where, line, row in rows:
        case = _to_case(row, spec.fields, where, line)
        if case.id in ids:
            raise InputError(f"{where}:{line}: duplicate case id {case.id!r}")
        ids.add(case.id)
        cases.append(case)
        if cap is not None and sample is None and len(cases) >= cap:
            break
    if sample is not None and sample < len(cases):
        keep = sorted(random.Random(seed).sample(range(len(cases)), sample))
        cases = [cases[i] for i in keep]
    if cap is not None:
        cases = cases[:cap]
    return cases


def _to_case(row: dict[str, Any], fields: FieldMap, where: str, line: int) -> Case:
    if not isinstance(row, dict):
        raise InputError(f"{where}:{line}: each row must be an object, got {type(row).__name__}")
    if isinstance(fields.input, str):
        if fields.input not in row:
            raise InputError(
                f"{where}:{line}: row has no input column {fields.input!r} (columns: {sorted(row)})"
            )
        value: str | dict[str, Any] = row[fields.input]
        if not isinstance(value, str | dict):
            value = str(value)
    else:
        missing = [c for c in fields.input if c not in row]
        if missing:
            raise InputError(f"{where}:{line}: row lacks input columns {missing}")
        value = {c: row[c] for c in fields.input}
    case_id = row.get(fields.id) if fields.id else None
    used = {fields.id, fields.expected, *([fields.input] if isinstance(fields.input, str) else fields.input)}
    keep = fields.metadata if fields.metadata is not None else [k for k in row if k not in used]
    return Case(
        id=str(case_id) if case_id is not None else f"row-{line}",
        input=value,
        expected=row.get(fields.expected) if fields.expected else None,
        metadata={k: row[k] for k in keep if k in row},
    )


def _open_text(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{number}: not UTF-8 text (byte {exc.start})") from exc


def _jsonl(path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for number, text in _open_text(path):
        if not text.strip():
            continue
        try:
            yield str(path), number, json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from exc


def _json(path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise InputError(f"{path}: a JSON dataset must be a list of rows")
    for i, row in enumerate(data):
        yield str(path), i + 1, row


def _csv(path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
        with handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield str(path), reader.line_num, dict(row)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: invalid CSV: {exc}") from exc
