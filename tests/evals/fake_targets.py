"""Targets used by the eval tests (importable as ``fake_targets:...`` from suite files)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiapp.evals import Case
from aiapp.types import Hit

ANSWERS = {"2+2": "4", "capital of France": "Paris", "color of the sky": "blue"}
CALLS: list[str] = []


def oracle(question: str) -> str:
    """Answers from a table; 'I don't know' otherwise."""
    CALLS.append(question)
    return ANSWERS.get(question, "I don't know")


def wrong(question: str) -> str:
    """Always wrong."""
    return "banana"


async def slow_oracle(question: str, case: Case) -> dict[str, Any]:
    """Async, two-argument form, returning Output fields including retrieval hits."""
    await asyncio.sleep(0.001)
    return {
        "text": ANSWERS.get(question, "?"),
        "hits": [Hit(text="x", source=case.metadata.get("source", "none"))],
    }


def broken(question: str) -> str:
    """A target with a bug."""
    raise ValueError("target bug")
