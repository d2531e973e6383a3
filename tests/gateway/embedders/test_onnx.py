"""The ONNX Runtime MiniLM: same vectors as sentence-transformers, a cached graph, no torch at query time."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the retrieval extra is not installed")

from aiapp.gateway.embedders import build_embedder
from aiapp.gateway.embedders import onnx as onnx_embedder
from aiapp.gateway.embedders.local import default_model_path
from aiapp.gateway.embedders.onnx import OnnxEmbedder, ensure_graph, graph_path

REPO = Path(__file__).resolve().parents[3]
MODEL_DIR = Path(default_model_path())
TEXTS = [
    "How do I make the server listen on all interfaces?",
    "Set OLLAMA_HOST=0.0.0.0 to make the server listen on all interfaces.",
    "   leading and trailing spaces   ",
    "",
    "Ünïcödé, emoji 🚀 and 中文 characters",
    '```bash\ncurl http://localhost:11434/api/generate -d \'{"model": "llama3"}\'\n```',
    "The quick brown fox jumps over the lazy dog. " * 60,  # ~600 tokens: truncated at 256
    "a literal [PAD] is a token (id 0) that the attention mask keeps, as sentence-transformers does",
]


@pytest.fixture(scope="session")
def graph_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The graph, built once for the whole session."""
    cache = tmp_path_factory.mktemp("onnx-models")
    ensure_graph(MODEL_DIR, cache)
    ensure_graph(MODEL_DIR, cache, precision="int8")
    return cache


@pytest.fixture(scope="session")
def onnx_minilm(graph_dir: Path) -> OnnxEmbedder:
    embedder = OnnxEmbedder(cache_dir=graph_dir)
    embedder.embed(["warm up"])
    return embedder


def test_default_local_embedder_is_onnx() -> None:
    embedder = build_embedder()
    assert isinstance(embedder, OnnxEmbedder) and embedder.runtime == "onnx"
    assert embedder.name == "local/all-MiniLM-L6-v2" and embedder.dim == 384 and embedder.max_tokens == 256
    torch_embedder = build_embedder(runtime="torch")
    assert torch_embedder.name == embedder.name and type(torch_embedder).__name__ == "LocalEmbedder"


def test_unknown_runtime_is_a_config_error() -> None:
    from aiapp.errors import ConfigError

    with pytest.raises(ConfigError, match="runtime"):
        build_embedder(runtime="tensorflow")  # type: ignore[arg-type]


def test_vectors_match_sentence_transformers(onnx_minilm: OnnxEmbedder) -> None:
    pytest.importorskip("sentence_transformers", reason="the torch embedder is not installed")
    from aiapp.gateway.embedders.local import LocalEmbedder

    torch_minilm = LocalEmbedder()
    ours = onnx_minilm.embed(TEXTS)
    theirs = torch_minilm.embed(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    # Batching and order do not change a vector.
    single = np.vstack([onnx_minilm.embed([t]) for t in TEXTS])
    assert np.allclose(single, ours, atol=1e-5)
    for text in TEXTS:
        assert onnx_minilm.count_tokens(text) == torch_minilm.count_tokens(text)


def test_graph_is_cached_by_weights_hash_and_not_rebuilt(graph_dir: Path) -> None:
    weights = MODEL_DIR / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    path = graph_path(MODEL_DIR, graph_dir)
    assert path.name == f"{sha[:16]}-g{onnx_embedder.GRAPH_VERSION}.onnx" and path.is_file()
    assert json.loads((graph_dir / "weights.json").read_text())["sha256"] == sha  # remembered, not rehashed
    before = path.stat().st_mtime_ns
    assert ensure_graph(MODEL_DIR, graph_dir) == path and path.stat().st_mtime_ns == before


def test_a_truncated_or_garbled_graph_is_rebuilt(
    graph_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "models"
    shutil.copytree(graph_dir, cache)
    path = graph_path(MODEL_DIR, cache)
    data = path.with_name(path.name + ".data")
    good = data.stat().st_size
    with data.open("r+b") as handle:
        handle.truncate(good // 2)
    assert ensure_graph(MODEL_DIR, cache) == path and data.stat().st_size == good

    path.write_bytes(b"\x07garbage" * (path.stat().st_size // 8) + b"x" * (path.stat().st_size % 8))
    monkeypatch.setattr(onnx_embedder, "_sessions", {})  # force a load from disk
    vectors = OnnxEmbedder(cache_dir=cache).embed(["still works"])
    assert vectors.shape == (1, 384)


def test_batches_by_token_length_give_the_same_vectors_in_the_callers_order(graph_dir: Path) -> None:
    wide = OnnxEmbedder(cache_dir=graph_dir, batch_size=64).embed(TEXTS)
    narrow = OnnxEmbedder(cache_dir=graph_dir, batch_size=2).embed(TEXTS)  # four batches, each padded alone
    assert np.allclose(wide, narrow, atol=1e-5)


def test_a_batch_holds_at_most_batch_tokens_padded_tokens(
    graph_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = OnnxEmbedder(cache_dir=graph_dir, batch_size=64)
    session = embedder.session
    shapes: list[tuple[int, ...]] = []

    class Recording:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            shapes.append(feeds["input_ids"].shape)
            result: list[np.ndarray] = session.run(names, feeds)
            return result

    monkeypatch.setattr(onnx_embedder, "BATCH_TOKENS", 600)
    embedder._session = Recording()
    texts = [TEXTS[6]] * 5 + TEXTS[:3]  # five 256-token texts, three short ones
    vectors = embedder.embed(texts)
    assert all(rows * width <= 600 or rows == 1 for rows, width in shapes), shapes
    assert shapes[0] == (2, 256) and sum(rows for rows, _ in shapes) == len(texts)
    embedder._session = session
    assert np.allclose(vectors, np.vstack([embedder.embed([t]) for t in texts]), atol=1e-5)


def test_int8_ingest_embedder_is_close_and_named_apart(onnx_minilm: OnnxEmbedder, graph_dir: Path) -> None:
    ingest = onnx_minilm.for_ingest()
    assert (
        isinstance(ingest, OnnxEmbedder) and ingest.precision == "int8" and ingest is onnx_minilm.for_ingest()
    )
    assert ingest.name == "local/all-MiniLM-L6-v2+int8" and onnx_minilm.name == "local/all-MiniLM-L6-v2"
    assert graph_path(MODEL_DIR, graph_dir, "int8").name.endswith(f"-int8q{onnx_embedder.QUANT_VERSION}.onnx")
    exact, quantized = onnx_minilm.embed(TEXTS), ingest.embed(TEXTS)
    assert quantized.shape == exact.shape and np.allclose(np.linalg.norm(quantized, axis=1), 1.0, atol=1e-5)
    cosines = (exact * quantized).sum(axis=1)
    assert cosines.min() >= 0.95 and cosines.mean() >= 0.98, cosines
    # A float32 query scores int8 documents as it scores float32 ones, to within 0.03.
    question = onnx_minilm.embed([TEXTS[0]], kind="query")[0]
    assert np.abs(quantized @ question - exact @ question).max() <= 0.03
    # Both precisions (and the torch runtime) search documents of either; nothing else does.
    for embedder in (onnx_minilm, ingest, build_embedder(runtime="torch")):
        assert embedder.searches("local/all-MiniLM-L6-v2") and embedder.searches(
            "local/all-MiniLM-L6-v2+int8"
        )
        assert not embedder.searches("openai/text-embedding-3-small")
    fp32_only = OnnxEmbedder(cache_dir=graph_dir, ingest_precision="fp32")
    assert fp32_only.for_ingest() is fp32_only
    assert build_embedder(precision="int8").name == ingest.name


def test_one_int8_text_runs_on_one_thread_with_the_same_vector(graph_dir: Path) -> None:
    ingest = OnnxEmbedder(cache_dir=graph_dir, precision="int8", threads=2)
    assert ingest.single_session is not ingest.session
    assert ingest.single_session.get_session_options().intra_op_num_threads == 1
    for text in TEXTS[:4]:
        ids = np.asarray([ingest.tokenizer.encode(text).ids], dtype=np.int64)
        (pooled,) = ingest.session.run(["pooled"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        two_threads = pooled[0] / np.linalg.norm(pooled[0])
        assert np.allclose(ingest.embed([text])[0], two_threads, atol=1e-5)
    fp32 = OnnxEmbedder(cache_dir=graph_dir, threads=2)
    assert fp32.single_session is fp32.session  # float32 gains from its threads, even for one text


def test_a_damaged_int8_graph_is_rebuilt(graph_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "models"
    shutil.copytree(graph_dir, cache)
    path = graph_path(MODEL_DIR, cache, "int8")
    data = path.with_name(path.name + ".data")
    good = data.stat().st_size
    with data.open("r+b") as handle:
        handle.truncate(good // 3)
    assert ensure_graph(MODEL_DIR, cache, precision="int8") == path and data.stat().st_size == good


def test_unknown_precision_is_a_config_error(graph_dir: Path) -> None:
    from aiapp.errors import ConfigError

    with pytest.raises(ConfigError, match="precision"):
        OnnxEmbedder(cache_dir=graph_dir, precision="int4")  # type: ignore[arg-type]


def test_threads_default_to_physical_cores() -> None:
    cores = onnx_embedder.physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert OnnxEmbedder().threads == min(cores, 8)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('HEAVY=' + ','.join(m for m in ('torch', 'sentence_transformers',"
        " 'transformers') if m in sys.modules), file=sys.stderr))\n"
        "from aiapp.cli import main\n"
        f"sys.argv = ['aiapp', *{args!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_search_ask_and_complete_never_import_torch(graph_dir: Path, tmp_path: Path) -> None:
    docs = tmp_path / "corpora" / "ollama" / "docs"
    docs.mkdir(parents=True)
    shutil.copy(REPO / "corpora" / "ollama" / "docs" / "faq.mdx", docs / "faq.mdx")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "aiapp.yaml").write_text(f"prompts:\n  dir: {REPO / 'prompts'}\n")
    home = tmp_path / "home"
    shutil.copytree(graph_dir, home / "models" / "all-MiniLM-L6-v2")  # the graph is built already
    env = {**os.environ, "AIAPP_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("AIAPP_CONFIG", None)

    for args in (
        ["index", "ollama"],
        ["search", "listen on all interfaces", "--k", "2", "--json"],
        ["ask", "How do I make the server listen on all interfaces?", "--json"],
        ["complete", "<context>Set OLLAMA_HOST=0.0.0.0.</context> How do I listen on all interfaces?"],
    ):
        result = _run(args, env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "HEAVY=\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY="), (args, result.stderr)
    manifest = json.loads(next((home / "indexes" / "ollama" / "manifests").glob("*.json")).read_text())
    assert manifest["embedder"] == "local/all-MiniLM-L6-v2+int8" and manifest["embedder_runtime"] == "onnx"


def test_import_aiapp_imports_no_runtime() -> None:
    code = "import sys, aiapp; print([m for m in ('onnxruntime', 'tokenizers', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
