"""``aiapp index`` and ``aiapp search`` end to end, with an API embedder served by the stub server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.testing import StubServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "retrieval"))
from _helpers import write_corpus

runner = CliRunner()


def write_config(tmp_path: Path, stub: StubServer) -> Path:
    config = tmp_path / "aiapp.yaml"
    config.write_text(
        "retrieval:\n"
        f"  corpora_dir: {tmp_path / 'corpora'}\n"
        "  default_corpus: demo\n"
        "  embedder: vllm/stub-embed\n"
        f"  embedder_api_base: {stub.base_url}\n"
        "  chunk_tokens: 64\n"
        "  chunk_overlap: 8\n"
    )
    return config


def test_index_then_search_json(tmp_path: Path, stub: StubServer) -> None:
    corpus = write_corpus(tmp_path / "corpora" / "demo")
    (corpus / "junk.txt").write_bytes(b"\x00\x01binary")
    config = write_config(tmp_path, stub)

    result = runner.invoke(app, ["index", "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 / 0 / 0 / 0" in result.output and "new index" in result.output
    assert "skipped junk.txt" in result.output

    result = runner.invoke(app, ["index", "demo", "--json", "--config", str(config)], catch_exceptions=False)
    report = json.loads(result.output)
    assert (report["added"], report["unchanged"], report["rebuilt"]) == (0, 4, False)

    query = "how do I change the port the server listens on"
    result = runner.invoke(
        app, ["search", query, "--json", "--k", "3", "--config", str(config)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert hits[0]["source"] == "guide/port.md"
    assert hits[0]["corpus_version"] == report["corpus_version"] and hits[0]["chunk_id"]
    embeds = stub.requests("embeddings")
    assert embeds and embeds[-1]["input"] == [query]

    result = runner.invoke(
        app,
        ["search", "GPUs", "--mode", "sparse", "-f", "tags=network", "--config", str(config)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0 and "no hits" in result.output

    result = runner.invoke(app, ["search", "port", "--config", str(config)], catch_exceptions=False)
    assert "1. guide/port.md" in result.output and "corpus version" in result.output

    result = runner.invoke(app, ["traces", "--kind", "retrieval", "--json"], catch_exceptions=False)
    spans = json.loads(result.output)
    assert spans and spans[0]["kind"] == "retrieval" and spans[0]["name"] == "search demo"


def test_search_errors_are_clear(tmp_path: Path, stub: StubServer) -> None:
    config = write_config(tmp_path, stub)
    for args, expected in (
        (["search", "x", "--config", str(config)], "run `aiapp index demo` first"),
        (["search", "x", "--mode", "fuzzy", "--config", str(config)], "unknown --mode"),
        (["index", "nope", "--config", str(config)], "corpus folder does not exist"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and expected in str(result.exception)
