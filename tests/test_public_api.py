"""The public API is pinned: adding a name is a decision, removing one is a breaking change."""

from __future__ import annotations

import subprocess
import sys

import aiapp
import aiapp.apps
import aiapp.gateway
import aiapp.guardrails
import aiapp.prompts
import aiapp.testing
import aiapp.tracing


def test_top_level_names() -> None:
    assert aiapp.__all__ == [
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
    for name in aiapp.__all__:
        assert getattr(aiapp, name) is not None


def test_import_is_light_and_offline() -> None:
    """`import aiapp` and building a gateway must not import litellm, openai or torch."""
    code = (
        "import sys, aiapp; gw = aiapp.Gateway.from_config(); gw.complete('hi');"
        "heavy = [m for m in ('litellm', 'openai', 'torch', 'sentence_transformers', 'guardrails') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
