"""The demo suites' gates catch retrieval regressions.

The demo suites gate on section-level gold (``path#Heading``), so ``hit_at_k``/``mrr`` move when
retrieval gets worse. These tests run the shipped suites for real — MiniLM index over
``corpora/ollama``, the local/extractive route, the committed baselines — and show that the system
as committed passes, while the same system retrieving only one chunk (``k: 1``), or indexed by a
chunker that lost the Markdown structure, does not get through the gate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiapp import evals
from aiapp.config import load_settings
from aiapp.evals import Case, Output, Sample, build_scorer
from aiapp.evals._gate import GateResult
from aiapp.gateway import Gateway
from aiapp.types import Hit

REPO = Path(__file__).resolve().parents[2]
SUITES = [REPO / "evals" / "ollama_support.yaml", REPO / "evals" / "ollama_faq.yaml"]


def _sample(hits: list[Hit], gold: list[str]) -> Sample:
    return Sample(case=Case(id="c", input="q", metadata={"sections": gold}), output=Output(hits=hits))


def test_section_gold_tells_sections_of_one_file_apart() -> None:
    gold = ["docs/faq.mdx#How can I expose Ollama on my network?"]
    wrong = Hit(text="Use a proxy.", source="docs/faq.mdx", metadata={"headings": ["How do I use a proxy?"]})
    right = Hit(
        text="## How can I expose Ollama on my network?\n\nOllama binds 127.0.0.1 port 11434 by default.",
        source="docs/faq.mdx",
    )
    nested = Hit(
        text="Set OLLAMA_HOST.",
        source="ollama/docs/faq.mdx",
        metadata={"headings": ["How can I expose  Ollama on my network?", "On Linux"]},
    )
    hit_at_k = build_scorer("hit_at_k", {"k": 5, "gold_field": "sections"})
    mrr = build_scorer("mrr", {"k": 5, "gold_field": "sections"})
    # A file-level gold would call the wrong section a hit; the section gold does not.
    assert (
        build_scorer("hit_at_k", {"k": 5})
        .score(
            Sample(
                case=Case(id="c", input="q", metadata={"sources": ["docs/faq.mdx"]}),
                output=Output(hits=[wrong]),
            )
        )
        .value
        == 1.0
    )
    assert hit_at_k.score(_sample([wrong], gold)).value == 0.0
    assert hit_at_k.score(_sample([wrong, right], gold)).value == 1.0  # inline heading of a merged chunk
    assert mrr.score(_sample([wrong, right], gold)).value == 0.5
    assert mrr.score(_sample([nested, wrong], gold)).value == 1.0  # heading path, whitespace/case folded
    other_file = Hit(text="## How can I expose Ollama on my network?", source="docs/gpu.mdx")
    assert hit_at_k.score(_sample([other_file], gold)).value == 0.0


def test_demo_gold_is_not_one_file_for_every_case() -> None:
    for path in SUITES:
        suite = evals.load_suite(path)
        cases = evals.load_cases(suite.dataset, base_dir=suite.base_dir)
        golds = {g for case in cases for g in case.metadata["sections"]}
        assert all("#" in g or g.endswith((".md", ".mdx")) for g in golds)
        assert len(golds) >= len(cases) * 0.75, f"{path.name}: gold sections barely differ between cases"


@pytest.fixture(scope="module")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The demo configuration (configs/aiapp.yaml) with the ollama corpus indexed in a private home."""
    home = tmp_path_factory.mktemp("demo-home")
    env = {**os.environ, "AIAPP_HOME": str(home)}
    cwd = Path.cwd()
    os.chdir(REPO)  # corpora/ resolves against the working directory, as for `make demo`
    try:
        settings = load_settings(REPO / "configs" / "aiapp.yaml", env=env)
        from aiapp.retrieval import Index

        with Index.open("ollama", settings) as index:
            index.ingest()
        with Gateway(settings) as gw:
            yield gw
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def broken_index(demo_gateway: Gateway) -> str:
    """``corpora/ollama`` indexed by a chunker that ignores Markdown headings (a plausible refactor bug)."""
    from aiapp.retrieval import Chunker, Index

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Chunker, "_sections", lambda self, doc: [([], doc.text.strip())])
        with Index.open("ollama_broken", demo_gateway.settings) as index:
            index.ingest(REPO / "corpora" / "ollama")
    return "ollama_broken"


def _gate(gw: Gateway, path: Path, *, k: int | None = None, index: str | None = None) -> GateResult:
    suite = evals.load_suite(path)
    changes = {key: value for key, value in (("k", k), ("index", index)) if value is not None}
    if changes:
        suite = suite.model_copy(update={"target": suite.target.model_copy(update=changes)})
    prepared = evals.prepare(suite, gw)
    result = evals.run(prepared)
    return evals.gate_run(prepared, result)


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_committed_system_passes_its_gate(demo_gateway: Gateway, path: Path) -> None:
    verdict = _gate(demo_gateway, path)
    assert verdict.baseline_found
    assert verdict.verdict == "pass", [m.as_dict() for m in verdict.metrics]
    assert {"hit_at_k", "mrr"} <= {m.metric for m in verdict.metrics}


def test_retrieving_one_chunk_fails_the_gate(demo_gateway: Gateway) -> None:
    faq = _gate(demo_gateway, SUITES[1], k=1)
    by_metric = {m.metric: m for m in faq.metrics}
    assert faq.verdict == "fail"
    assert faq.exit_code == 1
    assert by_metric["hit_at_k"].verdict == "fail"
    assert by_metric["hit_at_k"].difference is not None and by_metric["hit_at_k"].difference.mean < -0.1
    # ollama_support is no witness here: its right section is first for 11 of 12 cases at any k, so
    # k=1 does not lower its retrieval metrics (the heading-blind chunker below is what it catches).


def test_a_chunker_that_loses_the_markdown_structure_does_not_pass(
    demo_gateway: Gateway, broken_index: str
) -> None:
    support = _gate(demo_gateway, SUITES[0], index=broken_index)
    by_metric = {m.metric: m for m in support.metrics}
    # The right section drops down the ranking: mrr falls by about 0.27-0.31. Whether twelve cases
    # prove that beyond the allowed 0.1 (fail) or only straddle it (inconclusive) moves with the
    # int8 ingest vectors; either way the gate does not let the change through.
    assert support.verdict in ("fail", "inconclusive") and support.exit_code != 0
    mrr = by_metric["mrr"]
    assert mrr.verdict in ("fail", "inconclusive")
    assert mrr.difference is not None and mrr.difference.mean < -0.2 and mrr.difference.low < -0.3
    faq = _gate(demo_gateway, SUITES[1], index=broken_index)
    assert faq.verdict != "pass" and faq.exit_code != 0
