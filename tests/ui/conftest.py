"""Fixtures of the console tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_seed import Seeded, seed


@pytest.fixture
def seeded(tmp_path: Path, aiapp_home: Path) -> Seeded:
    """A repository root and AIAPP_HOME holding everything the console shows."""
    return seed(tmp_path, aiapp_home)
