"""aiapp: build LLM applications with a gateway, retrieval, versioned prompts and evals that gate CI.

The public API, loaded lazily so ``import aiapp`` stays fast::

    import aiapp
    gw = aiapp.Gateway.from_config()
    reply = gw.complete("hello")          # offline by default: the local/extractive baseline
    print(reply.text, reply.usage, reply.trace_id)

Layers (each imports only from those before it; import-linter checks it, see pyproject.toml):
``errors``, ``types``, ``config`` → ``tracing`` → ``gateway`` → ``testing`` → ``prompts`` | ``retrieval``
→ ``agents`` | ``apps`` | ``guardrails`` → ``evals`` → ``cli``. Everything that talks to a model is
async; the sync calls run on one persistent loop (:func:`aiapp.gateway.run_sync`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # types
    "CallOptions": "aiapp.types",
    "Completion": "aiapp.types",
    "Message": "aiapp.types",
    "ResponseFormat": "aiapp.types",
    "StreamChunk": "aiapp.types",
    "ToolCall": "aiapp.types",
    "ToolSpec": "aiapp.types",
    "Usage": "aiapp.types",
    # config
    "Settings": "aiapp.config",
    "load_settings": "aiapp.config",
    # errors
    "AiappError": "aiapp.errors",
    "ConfigError": "aiapp.errors",
    "OutputParseError": "aiapp.errors",
    "ProviderError": "aiapp.errors",
    "UserError": "aiapp.errors",
    # gateway (feedback on a traced answer is a score on its trace)
    "Gateway": "aiapp.gateway",
    "feedback": "aiapp.gateway",
    "Model": "aiapp.gateway",
    "PromptRef": "aiapp.gateway",
    "register_provider": "aiapp.gateway",
    # tracing
    "TraceStore": "aiapp.tracing",
    # retrieval
    "Index": "aiapp.retrieval",
    # agents
    "Agent": "aiapp.agents",
    "tool": "aiapp.agents",
    # prompts (the subpackage itself: aiapp.prompts.get("support_answer", label="production"))
    "prompts": "aiapp.prompts",
    # apps
    "Answer": "aiapp.apps",
    "RAGApp": "aiapp.apps",
}

__all__ = [
    "Agent",
    "AiappError",
    "Answer",
    "CallOptions",
    "Completion",
    "ConfigError",
    "Gateway",
    "Index",
    "Message",
    "Model",
    "OutputParseError",
    "PromptRef",
    "ProviderError",
    "RAGApp",
    "ResponseFormat",
    "Settings",
    "StreamChunk",
    "ToolCall",
    "ToolSpec",
    "TraceStore",
    "Usage",
    "UserError",
    "__version__",
    "feedback",
    "load_settings",
    "prompts",
    "register_provider",
    "tool",
]

if TYPE_CHECKING:
    from aiapp import prompts
    from aiapp.agents import Agent, tool
    from aiapp.apps import Answer, RAGApp
    from aiapp.config import Settings, load_settings
    from aiapp.errors import AiappError, ConfigError, OutputParseError, ProviderError, UserError
    from aiapp.gateway import Gateway, Model, PromptRef, feedback, register_provider
    from aiapp.retrieval import Index
    from aiapp.tracing import TraceStore
    from aiapp.types import (
        CallOptions,
        Completion,
        Message,
        ResponseFormat,
        StreamChunk,
        ToolCall,
        ToolSpec,
        Usage,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aiapp' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"aiapp.{name}" else getattr(imported, name)  # a subpackage
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
