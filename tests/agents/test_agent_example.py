"""The copilot example runs offline, end to end; and the agents layer's public names are pinned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiapp.agents
import aiapp.agents.tools

REPO = Path(__file__).resolve().parents[2]


def test_copilot_example_runs_offline() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "copilot.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert "port 11434" in out
    assert "success: True" in out and "16384 tokens" in out
    assert "[approval] file_note ok" in out and "[tool] calculator ok" in out
    assert "tracker-s3cr3t" not in out


def test_agent_layer_names() -> None:
    assert set(aiapp.agents.__all__) >= {
        "Agent",
        "AgentRun",
        "AgentLimits",
        "Memory",
        "ConversationMemory",
        "VectorMemory",
        "Secret",
        "Tool",
        "ToolContext",
        "tool",
    }
    assert set(aiapp.agents.tools.__all__) >= {"calculator", "search_tool", "sql_tool", "http_get_tool"}
    assert aiapp.Agent is aiapp.agents.Agent and aiapp.tool is aiapp.agents.tool
