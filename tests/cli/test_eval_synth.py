"""``aiapp eval synth`` and ``aiapp eval synth-apply`` end to end, offline (the heading template route)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aiapp.cli import app

runner = CliRunner()

_PAD = " ".join(
    f"Line {i} of the notes repeats that this setting is read when the server starts." for i in range(14)
)
DOC = f"""# FAQ

## How do I change the port?

Set OLLAMA_HOST to the address and port you want the server to use. The default port is 11434 on
the loopback address. {_PAD}

## Where are models stored?

Models are stored under the home folder of the user. Set OLLAMA_MODELS to keep them in another
directory of your choice. {_PAD}

## How do I enable flash attention?

Set the OLLAMA_FLASH_ATTENTION environment variable to 1 when starting the server. Flash attention
lowers memory use as the context grows. {_PAD}
"""


def test_synth_then_review_then_apply(tmp_path: Path) -> None:
    corpus = tmp_path / "mini"
    corpus.mkdir()
    (corpus / "faq.md").write_text(DOC)
    out = tmp_path / "set.jsonl"
    result = runner.invoke(
        app,
        [
            "eval",
            "synth",
            str(corpus),
            "--n",
            "3",
            "--route",
            "local/heading-questions",
            "--kinds",
            "factual",
            "-o",
            str(out),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kept"] == 3 and report["requested"] == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["question"] for r in rows} == {
        "How do I change the port?",
        "Where are models stored?",
        "How do I enable flash attention?",
    }
    review = Path(report["review"])
    lines = [json.loads(line) for line in review.read_text().splitlines()]
    lines[0]["verdict"] = "reject"
    for line in lines[1:]:
        line["verdict"] = "accept"
    review.write_text("".join(json.dumps(line) + "\n" for line in lines))
    reviewed = tmp_path / "reviewed.jsonl"
    result = runner.invoke(
        app, ["eval", "synth-apply", str(out), "-o", str(reviewed)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "2 accepted, 1 rejected, 0 pending" in result.output
    assert len(reviewed.read_text().splitlines()) == 2


def test_too_few_pairs_is_a_clear_error(tmp_path: Path) -> None:
    corpus = tmp_path / "mini"
    corpus.mkdir()
    (corpus / "faq.md").write_text(DOC)
    result = runner.invoke(
        app,
        [
            "eval",
            "synth",
            str(corpus),
            "--n",
            "3",
            "--route",
            "local/heading-questions",
            "--kinds",
            "howto",
            "-o",
            str(tmp_path / "x.jsonl"),
        ],
    )
    assert result.exit_code != 0
    assert "synthetic set too small: 0 of 3 pairs survived" in str(result.exception)
    assert "reply has no pair (howto)" in str(result.exception)
    assert not (tmp_path / "x.jsonl").exists()
