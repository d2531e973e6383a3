"""The semantic cache: hits by meaning, only within an exactly matching scope."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aiapp.config import CacheSettings, SemanticCacheSettings, Settings
from aiapp.gateway import Gateway, PromptRef
from aiapp.gateway.cache import CachedModel, SemanticIndex, SQLiteCacheStore
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import FakeModel, embed_text
from aiapp.types import Message


class HashEmbedder(Embedder):
    """Bag-of-words vectors: texts with the same words (any case, any punctuation) are identical."""

    name = "test/hash"
    dim = 64

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        return normalize(np.array([embed_text(t, self.dim) for t in texts], dtype=np.float32))


def semantic_gateway(tmp_path: Path, fake: FakeModel, threshold: float = 0.93) -> Gateway:
    index = SemanticIndex(tmp_path / "sem.db", embedder="test/hash", threshold=threshold)
    model = CachedModel(
        fake,
        route="r",
        identity="r",
        store=SQLiteCacheStore(tmp_path / "c.db"),
        semantic=index,
        embedder=HashEmbedder,
    )
    return Gateway(Settings(), models={"r": model})


def test_a_reworded_request_hits(tmp_path: Path) -> None:
    fake = FakeModel(["Paris."])
    gw = semantic_gateway(tmp_path, fake)
    gw.complete("What is the capital of France?", model="r")
    hit = gw.complete("what is the capital of france", model="r")
    assert hit.cache_hit and hit.text == "Paris." and fake.call_count == 1
    [span] = gw.tracer.store.trace(hit.trace_id)  # type: ignore[union-attr,arg-type]
    assert span.attributes["cache"] == "semantic_hit" and span.attributes["cache_similarity"] >= 0.93


def test_different_numbers_never_share_a_reply(tmp_path: Path) -> None:
    fake = FakeModel(default="an answer")
    gw = semantic_gateway(tmp_path, fake, threshold=0.5)  # even at a low threshold
    gw.complete("What was the revenue of Acme in 2019 in the United States?", model="r")
    assert not gw.complete("What was the revenue of Acme in 2020 in the United States?", model="r").cache_hit
    assert gw.complete("what was the revenue of acme in 2019 in the united states", model="r").cache_hit


def test_the_scope_is_exact_system_prompt_history_parameters_and_prompt_version(tmp_path: Path) -> None:
    fake = FakeModel(default="an answer")
    gw = semantic_gateway(tmp_path, fake)
    gw.complete([Message.system("Be brief."), Message.user("How do I reset my password?")], model="r")
    misses = [
        [Message.system("Be thorough."), Message.user("how do i reset my password")],
        [Message.user("how do i reset my password")],
    ]
    for messages in misses:
        assert not gw.complete(messages, model="r").cache_hit
    assert not gw.complete(
        [Message.system("Be brief."), Message.user("how do i reset my password")], model="r", temperature=1.0
    ).cache_hit
    v1 = PromptRef("help@v1", "a")
    gw.complete("How do I reset my password?", model="r", prompt_ref=v1)
    assert gw.complete("how do i reset my password", model="r", prompt_ref=v1).cache_hit
    assert not gw.complete(
        "how do i reset my password", model="r", prompt_ref=PromptRef("help@v2", "b")
    ).cache_hit


def test_much_longer_or_shorter_requests_do_not_hit(tmp_path: Path) -> None:
    fake = FakeModel(default="an answer")
    gw = semantic_gateway(tmp_path, fake, threshold=0.5)
    gw.complete("reset my password", model="r")
    assert not gw.complete("reset my password for the admin console account today", model="r").cache_hit


def test_vectors_persist_across_restarts(tmp_path: Path) -> None:
    gw = semantic_gateway(tmp_path, FakeModel(["stored"]))
    gw.complete("What is the capital of France?", model="r")
    gw.close()
    again = semantic_gateway(tmp_path, FakeModel())
    assert again.complete("WHAT IS THE CAPITAL OF FRANCE", model="r").text == "stored"


def test_semantic_cache_with_the_local_minilm_through_configuration() -> None:
    settings = Settings(cache=CacheSettings(semantic=SemanticCacheSettings(enabled=True)))
    fake = FakeModel(["Use Settings > Security > Reset.", "Use Settings > Account > Delete."])
    gw = Gateway(settings, models={"help": fake})
    gw.complete("How do I reset my password?", model="help")
    hit = gw.complete("How can I reset my password?", model="help")
    assert hit.cache_hit and hit.text == "Use Settings > Security > Reset."
    miss = gw.complete("How do I delete my account?", model="help")
    assert not miss.cache_hit and miss.text == "Use Settings > Account > Delete."
    assert fake.call_count == 2


def test_semantic_cache_is_off_by_default_and_in_replay() -> None:
    assert CacheSettings().semantic.enabled is False
    assert CachedModel(FakeModel(), route="r", identity="r", store=SQLiteCacheStore(":memory:"), mode="replay",
                       semantic=SemanticIndex(None, embedder="x", threshold=0.9)).semantic is None  # fmt: skip
