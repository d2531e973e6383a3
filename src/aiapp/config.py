"""Typed settings: ``configs/aiapp.yaml`` overlaid by ``AIAPP_*`` environment variables.

Where things are looked up:

* the config file: ``$AIAPP_CONFIG``, else ``./configs/aiapp.yaml``, else the embedded defaults
  (one route, ``local``, on the offline ``local/extractive`` model);
* state (traces, caches, indexes): ``$AIAPP_HOME``, else ``~/.aiapp``;
* ``AIAPP_DEFAULT_ROUTE`` overrides ``default_route``; ``AIAPP_TRACING=0`` turns tracing off;
  ``AIAPP_CACHE_MODE`` (``on``, ``off``, ``record``, ``replay``) overrides ``cache.mode``.

Settings are loaded at the edge (CLI, ``Gateway.from_config()``) and passed down; nothing reads
them from module globals. String values may reference the environment as ``${VAR}`` or
``${VAR:-default}``; a missing variable without a default is an error naming the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aiapp._gateway_config import BreakerPolicy as BreakerPolicy
from aiapp._gateway_config import Budget as Budget
from aiapp._gateway_config import BudgetSettings as BudgetSettings
from aiapp._gateway_config import CacheSettings as CacheSettings
from aiapp._gateway_config import Limits as Limits
from aiapp._gateway_config import RetryPolicy as RetryPolicy
from aiapp._gateway_config import SemanticCacheSettings as SemanticCacheSettings
from aiapp._gateway_config import Strategy as Strategy
from aiapp._gateway_config import provider_prefix_problem
from aiapp._guard_config import GuardSpec as GuardSpec
from aiapp._guard_config import RouteGuards as RouteGuards
from aiapp._rollout_config import ShadowSpec as ShadowSpec
from aiapp._yaml import LocatedYaml, read_yaml_file
from aiapp.errors import ConfigError

ProviderKind = str

#: Model-name prefixes served by the OpenAI-compatible fast path (no litellm in the call path).
OPENAI_COMPATIBLE_PREFIXES = ("openai", "vllm", "hosted_vllm", "ollama_chat_openai", "openai_compatible")
#: Model-name prefixes aiapp serves itself; any other must be one of litellm's providers.
KNOWN_PREFIXES = ("local", *OPENAI_COMPATIBLE_PREFIXES)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Deployment(_Strict):
    """One concrete model behind a route.

    ``model`` is ``provider/model-name``: ``local/extractive``; ``openai/gpt-4o-mini`` and
    ``vllm/<name>`` (with ``api_base``) take the OpenAI-compatible fast path (``provider: vllm``
    or ``model: vllm/auto`` adds model discovery, ``/health`` checks and vLLM's structured-output
    options: :mod:`aiapp.gateway.providers.vllm`); anything else
    (``anthropic/...``, ``gemini/...``, ``bedrock/...``) goes through litellm. ``provider`` forces
    a path explicitly.
    """

    model: str = Field(min_length=1)
    provider: ProviderKind | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0)  # share of traffic under strategy: weighted
    limits: Limits | None = None  # rpm/tpm of this deployment, shared by every route using it

    @property
    def kind(self) -> ProviderKind:
        """Which provider implementation serves this deployment."""
        if self.provider is not None:
            return self.provider
        prefix = self.model.split("/", 1)[0]
        if prefix == "local":
            return "local"
        if self.model in ("vllm/auto", "hosted_vllm/auto"):
            return "vllm"  # discover the served model (aiapp.gateway.providers.vllm)
        if prefix in OPENAI_COMPATIBLE_PREFIXES:
            return "openai"
        return "litellm"

    @property
    def label(self) -> str:
        """How errors and traces name this deployment."""
        return f"{self.model}@{self.api_base}" if self.api_base else self.model


class Route(_Strict):
    """A named route: deployments tried until one answers (see :mod:`aiapp.gateway._route`).

    ``strategy`` orders the deployments; ``retries`` and ``breaker`` say how failures are retried
    and cooled down; ``timeout_s`` bounds the whole call, retries included; ``cache: false`` keeps
    the route out of the response cache; ``budget`` and ``limits`` cap its spending and rate.
    ``guards`` lists the input and output guards its calls pass through.
    """

    description: str = ""
    deployments: list[Deployment] = Field(min_length=1)
    strategy: Strategy = "fallback"
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    timeout_s: float | None = Field(default=None, gt=0)
    cache: bool = True
    budget: Budget | None = None
    limits: Limits | None = None
    guards: RouteGuards | None = None  # input/output guards (see aiapp._guard_config)
    shadow: ShadowSpec | None = None  # a route mirrored after each answer (see aiapp.rollout)


class Price(_Strict):
    """A price override in USD per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class TracingSettings(_Strict):
    """What the trace store keeps.

    Attributes:
        enabled: Write spans to ``$AIAPP_HOME/traces.db``.
        store_content: ``False`` keeps metadata only (no prompts/replies); superseded by ``capture``.
        capture: ``none`` (no spans), ``metadata`` (no content), ``redacted`` (content with PII and
            secrets replaced by placeholders, by the same detectors as the ``pii``/``secrets``
            guards) or ``full``. Unset: ``redacted`` when any route has guards (the store must not
            keep what a guard redacted), else ``full`` (or ``metadata`` with ``store_content: false``).
        export: Also send spans and scores to ``otlp`` (any OpenTelemetry backend) or ``langfuse``
            (keys and host from ``LANGFUSE_*``), batched off the hot path; unset: nothing leaves
            the machine.
        endpoint: The OTLP traces URL; unset: ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``.
        headers: Extra OTLP request headers (merged over ``OTEL_EXPORTER_OTLP_HEADERS``).
        export_content: Export message content too (only what ``capture`` keeps; off by default).
    """

    enabled: bool = True
    store_content: bool = True
    capture: Literal["none", "metadata", "redacted", "full"] | None = None
    export: Literal["otlp", "langfuse"] | None = None
    endpoint: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    export_content: bool = False

    def capture_policy(self, *, guarded: bool) -> Literal["none", "metadata", "redacted", "full"]:
        """The policy in force (see ``capture``)."""
        if self.capture is not None:
            return self.capture
        if not self.store_content:
            return "metadata"
        return "redacted" if guarded else "full"


class RetrievalSettings(_Strict):
    """Corpora, chunking, embedding and the vector store (``retrieval:`` in the config file).

    Attributes:
        corpora_dir: Where ``corpora/<name>/`` folders live (relative to the working directory).
        default_corpus: The corpus ``aiapp index`` and ``aiapp search`` use when none is named.
        embedder: ``local/all-MiniLM-L6-v2`` (offline) or an API model (``openai/...``, ``vllm/...``).
        embedder_api_base: Base URL for an API embedder.
        embedder_api_key_env: Environment variable holding the API embedder's key.
        embedder_runtime: How the local MiniLM runs: ``onnx`` (ONNX Runtime, no torch: fast start) or
            ``torch`` (sentence-transformers). Both give the same vectors. Default: ``onnx`` when
            onnxruntime is installed.
        embedding_cache: Keep embeddings in ``$AIAPP_HOME/cache/embeddings.sqlite``, keyed by (model, text hash).
        chunk_tokens: Chunk size in the embedding model's own tokens (title and headings included).
        chunk_overlap: Tokens shared by consecutive chunks of one section.
        store: ``edge`` (embedded Qdrant Edge) or ``qdrant`` (a Qdrant server via ``url``).
        url: Qdrant server URL (``http://host:6333``); ``:memory:`` or ``local`` run qdrant-client's local mode.
        api_key_env: Environment variable holding the Qdrant server's API key.
        fusion: How hybrid search fuses dense and BM25 results: ``dbsf`` or ``rrf``.
        rrf_k: The RRF constant (used when ``fusion`` is ``rrf``).
        candidates: Results each of dense and BM25 contributes before fusion.
        include: Glob patterns of files to index, relative to the corpus root.
        exclude: Glob patterns of files to skip.
        max_file_mb: The largest file indexed, in MB (10**6 bytes) on disk; also caps the text
            extracted from any one file. A bigger file is skipped (with its size in the report),
            never read whole (chunking and embedding take many times a file's size in memory).
        max_pdf_mb: The largest PDF file indexed, in MB on disk (PDFs carry images and fonts).
        follow_links_outside: Index symbolic links whose target lies outside the corpus folder.
            Off by default: such links are skipped and reported, as are symlink loops.
    """

    corpora_dir: Path = Path("corpora")
    default_corpus: str = "ollama"
    embedder: str = "local/all-MiniLM-L6-v2"
    embedder_api_base: str | None = None
    embedder_api_key_env: str | None = None
    embedder_runtime: Literal["onnx", "torch"] | None = None
    embedding_cache: bool = True
    chunk_tokens: int = Field(default=256, ge=32, le=8192)
    chunk_overlap: int = Field(default=32, ge=0)
    store: Literal["edge", "qdrant"] = "edge"
    url: str | None = None
    api_key_env: str | None = None
    fusion: Literal["dbsf", "rrf"] = "dbsf"
    rrf_k: int = Field(default=60, ge=1)
    candidates: int = Field(default=100, ge=1)
    include: list[str] = Field(
        default_factory=lambda: ["**/*.md", "**/*.mdx", "**/*.markdown", "**/*.txt", "**/*.htm*", "**/*.pdf"]
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["**/.*", "**/.*/**", "**/LICENSE*", "**/node_modules/**"]
    )
    max_file_mb: float = Field(default=10.0, gt=0)
    max_pdf_mb: float = Field(default=50.0, gt=0)
    follow_links_outside: bool = False

    @model_validator(mode="after")
    def _check(self) -> RetrievalSettings:
        if self.chunk_overlap >= self.chunk_tokens // 2:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be under half of chunk_tokens ({self.chunk_tokens})"
            )
        return self

    @property
    def backend(self) -> Literal["edge", "qdrant"]:
        """The store in use: ``qdrant`` whenever a ``url`` is set, else ``store``."""
        return "qdrant" if self.url else self.store


class PromptSettings(_Strict):
    """Where versioned prompt files live (``prompts:`` in the config file).

    Attributes:
        dir: The prompts directory (``<name>/v<N>.yaml`` plus ``labels.yaml``), relative to the
            working directory.
    """

    dir: Path = Path("prompts")


class Settings(_Strict):
    """Everything aiapp reads from configuration.

    Attributes:
        default_route: Route used when a call names none.
        routes: Named routes.
        pricing: Per-model price overrides (``provider/model`` → price), on top of litellm's table.
        tracing: Trace store options.
        retrieval: Corpora, chunking, embedder and vector store options.
        prompts: Where versioned prompt files live.
        cache: Response cache (exact, semantic, record/replay); ``None`` (no section) means off.
        budgets: Budgets per key (route budgets live on the route).
        redis_url: Shared state for several processes (``redis://host:port/db``): budgets, virtual
            keys and their rate limits live in Redis when it is set, in ``$AIAPP_HOME`` otherwise.
            (The cache has its own ``cache.url``.)
        home: State directory (``AIAPP_HOME``); not read from the file.
        source: The file these settings came from, or ``None`` for embedded defaults.
    """

    default_route: str = "local"
    routes: dict[str, Route] = Field(default_factory=dict)
    pricing: dict[str, Price] = Field(default_factory=dict)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    cache: CacheSettings | None = None
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    redis_url: str | None = None
    home: Path = Field(default_factory=lambda: default_home(), exclude=True)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("routes")
    @classmethod
    def _route_names(cls, routes: dict[str, Route]) -> dict[str, Route]:
        for name in routes:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"route name {name!r} may only use letters, digits, '_', '-' and '.'")
        return routes

    @model_validator(mode="after")
    def _ensure_local_route(self) -> Settings:
        if "local" not in self.routes:
            self.routes["local"] = Route(
                description="Offline extractive baseline", deployments=[Deployment(model="local/extractive")]
            )
        if self.default_route not in self.routes and "/" not in self.default_route:
            known = ", ".join(sorted(self.routes))
            raise ValueError(f"default_route {self.default_route!r} is not a defined route (known: {known})")
        return self

    def config_hash(self) -> str:
        """A short hash of the effective configuration, recorded with every trace."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:12]

    @property
    def traces_path(self) -> Path:
        """The SQLite trace store."""
        return self.home / "traces.db"


def default_home() -> Path:
    """``$AIAPP_HOME`` or ``~/.aiapp``."""
    env = os.environ.get("AIAPP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".aiapp"


def find_config_file(start: Path | None = None) -> Path | None:
    """``$AIAPP_CONFIG`` if set (it must exist), else ``configs/aiapp.yaml`` under ``start`` (cwd)."""
    env = os.environ.get("AIAPP_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError("AIAPP_CONFIG points at a file that does not exist", path=str(path))
        return path
    candidate = (start or Path.cwd()) / "configs" / "aiapp.yaml"
    return candidate if candidate.is_file() else None


def load_settings(path: Path | str | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or the discovered config file) and the environment.

    Raises:
        ConfigError: naming the file, line and field of the first problems found.
    """
    environ = dict(os.environ if env is None else env)
    file = Path(path) if path is not None else find_config_file()
    data: dict[str, Any] = {}
    located: LocatedYaml | None = None
    if file is not None:
        located = read_yaml_file(file)
        if located.data is None:
            located.data = {}
        if not isinstance(located.data, dict):
            raise ConfigError("the top level must be a mapping of settings", path=str(file), line=1)
        data = _interpolate(located.data, environ, located, ())
    if environ.get("AIAPP_DEFAULT_ROUTE"):
        data["default_route"] = environ["AIAPP_DEFAULT_ROUTE"]
    if environ.get("AIAPP_TRACING") is not None:
        tracing = dict(data.get("tracing") or {})
        tracing["enabled"] = environ["AIAPP_TRACING"].lower() not in ("0", "false", "no", "off")
        data["tracing"] = tracing
    if environ.get("AIAPP_CACHE_MODE"):
        data["cache"] = {**(data.get("cache") or {}), "mode": environ["AIAPP_CACHE_MODE"].lower()}
    home = Path(environ["AIAPP_HOME"]).expanduser() if environ.get("AIAPP_HOME") else default_home()
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, file, located) from exc
    _check_providers(settings, file, located)
    settings.home = home
    settings.source = file
    return settings


def _check_providers(settings: Settings, file: Path | None, located: LocatedYaml | None) -> None:
    """Every provider prefix names a provider; else a ConfigError naming the ``model:`` line."""
    checks: list[tuple[tuple[str | int, ...], str, str | None]] = [
        (("routes", name, "deployments", i, "model"), d.model, d.provider)
        for name, route in settings.routes.items()
        for i, d in enumerate(route.deployments)
    ]
    if settings.default_route not in settings.routes:  # an ad-hoc provider/model
        checks.append((("default_route",), settings.default_route, None))
    for loc, model, provider in checks:
        problem = provider_prefix_problem(model, provider=provider, ours=KNOWN_PREFIXES)
        if problem is not None:
            raise ConfigError(
                problem,
                path=str(file) if file else None,
                line=located.line_of(loc) if located is not None else None,
                field=".".join(map(str, loc)),
            )


def _config_error(exc: ValidationError, file: Path | None, located: LocatedYaml | None) -> ConfigError:
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    field = ".".join(str(p) for p in loc) or None
    line = located.line_of(loc) if located is not None else None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
    others = len(exc.errors()) - 1
    if others:
        message += f" (and {others} more problem{'s' if others > 1 else ''})"
    return ConfigError(message, path=str(file) if file else None, line=line, field=field)


def _interpolate(
    value: Any, environ: dict[str, str], located: LocatedYaml, loc: tuple[str | int, ...]
) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, environ, located, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environ, located, (*loc, i)) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and environ[name] != "":
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)",
                path=located.path,
                line=located.line_of(loc),
                field=".".join(str(p) for p in loc),
            )

        return _ENV_REF.sub(replace, value)
    return value


__all__ = [
    "KNOWN_PREFIXES",
    "OPENAI_COMPATIBLE_PREFIXES",
    "BreakerPolicy",
    "Budget",
    "BudgetSettings",
    "CacheSettings",
    "Deployment",
    "GuardSpec",
    "Limits",
    "Price",
    "PromptSettings",
    "RetrievalSettings",
    "RetryPolicy",
    "Route",
    "RouteGuards",
    "SemanticCacheSettings",
    "Settings",
    "Strategy",
    "TracingSettings",
    "default_home",
    "find_config_file",
    "load_settings",
]
