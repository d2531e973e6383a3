"""Datasets and suite files: loading, field mapping, and errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiapp.errors import ConfigError, InputError
from aiapp.evals import DatasetSpec, FieldMap, load_cases, load_suite


def test_jsonl_rows_become_cases_with_metadata(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": 1, "question": "q", "answer": "a", "source": "s.md"}\n\n')
    [case] = load_cases(DatasetSpec(path="d.jsonl"), base_dir=tmp_path)
    assert (case.id, case.input, case.expected, case.metadata) == ("1", "q", "a", {"source": "s.md"})


def test_csv_and_multi_column_inputs(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("topic,tone,gold\nrust,formal,x\ngo,casual,y\n")
    spec = DatasetSpec(path="d.csv", fields=FieldMap(id=None, input=["topic", "tone"], expected="gold"))
    cases = load_cases(spec, base_dir=tmp_path)
    assert cases[1].input == {"topic": "go", "tone": "casual"} and cases[1].expected == "y"
    assert cases[1].id == "row-3"  # csv line number


def test_inline_rows_limit_and_sample() -> None:
    spec = DatasetSpec(inline=[{"id": str(i), "question": f"q{i}"} for i in range(50)])
    assert [c.id for c in load_cases(spec, base_dir=Path("."), limit=3)] == ["0", "1", "2"]
    sampled = load_cases(spec, base_dir=Path("."), sample=5, seed=7)
    assert len(sampled) == 5 and sampled == load_cases(spec, base_dir=Path("."), sample=5, seed=7)
    assert [int(c.id) for c in sampled] == sorted(int(c.id) for c in sampled)


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"question": "ok"}\n{"question": oops}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: invalid JSON"):
        load_cases(DatasetSpec(path="d.jsonl"), base_dir=tmp_path)


def test_missing_input_column_and_binary_file(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(InputError, match=r"d.jsonl:1: row has no input column 'question'"):
        load_cases(DatasetSpec(path="d.jsonl"), base_dir=tmp_path)
    (tmp_path / "b.jsonl").write_bytes(b'{"question": "a"}\n\xff\xfe\n')
    with pytest.raises(InputError, match=r"b.jsonl:2: not UTF-8"):
        load_cases(DatasetSpec(path="b.jsonl"), base_dir=tmp_path)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n')
    with pytest.raises(InputError, match="duplicate case id 'a'"):
        load_cases(DatasetSpec(path="d.jsonl"), base_dir=tmp_path)


def test_suite_scorer_shorthands_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("dataset: {inline: [{question: q}]}\nscorers: [exact_match, {hit_at_k: {k: 3}}]\n")
    suite = load_suite(path)
    assert suite.name == "s"
    assert [(s.name, s.params) for s in suite.scorers] == [("exact_match", {}), ("hit_at_k", {"k": 3})]
    assert suite.baseline_path == tmp_path / "baselines" / "s.json"
    assert suite.target.resolved_kind == "rag"


def test_suite_unknown_key_names_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("dataset: {inline: [{question: q}]}\nscorers: [exact_match]\nrepeat: 3\n")
    with pytest.raises(ConfigError, match=r"s.yaml:3 \(repeat\): unknown key 'repeat'"):
        load_suite(path)
