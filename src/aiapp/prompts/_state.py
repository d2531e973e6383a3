"""Automatic rollbacks, persisted: ``$AIAPP_HOME/rollout/state.json``.

When a canary's guard rails trip, its weight drops to 0 here rather than in ``labels.yaml`` (a
reviewed file the running service should not rewrite). The override is tied to the split as it
was configured: once someone edits that label's split (``aiapp prompts rollback``/``promote`` or by
hand), the override no longer applies. Writes are atomic (a temporary file renamed over the old one)
under an exclusive file lock, so two processes rolling back at once both land.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["RolloutState"]


class RolloutState:
    """Weight overrides per experiment (``label/name``), kept in a JSON file.

    Args:
        path: The state file; ``None`` keeps overrides in memory only.
    """

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, Any] = {"overrides": {}}
        self._mtime: float | None = None
        self.reload()

    def reload(self) -> bool:
        """Re-read the file when it changed on disk; ``True`` when it did."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        self._data = self._read()
        return True

    def overrides(self, experiment: str, signature: str) -> dict[int, float]:
        """``version -> weight`` overrides for an experiment whose split is still ``signature``."""
        entry = self._data["overrides"].get(experiment)
        if not entry or entry.get("split") != signature:
            return {}
        return {int(v.removeprefix("v")): float(o["weight"]) for v, o in entry.get("arms", {}).items()}

    def details(self, experiment: str) -> dict[str, Any]:
        """The stored record of an experiment's overrides (reasons and times), or ``{}``."""
        return dict(self._data["overrides"].get(experiment, {}))

    def set_weight(self, experiment: str, signature: str, version: int, weight: float, reason: str) -> None:
        """Override one arm's weight and persist it (atomic write under a file lock)."""
        with self._locked():
            data = self._read() if self.path is not None else self._data
            entry = data["overrides"].get(experiment)
            if not entry or entry.get("split") != signature:
                entry = {"split": signature, "arms": {}}
            entry["arms"][f"v{version}"] = {"weight": weight, "reason": reason, "at": time.time()}
            data["overrides"][experiment] = entry
            self._data = data
            self._write(data)

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {"overrides": {}}
        if not isinstance(data, dict) or not isinstance(data.get("overrides"), dict):
            return {"overrides": {}}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._mtime = self.path.stat().st_mtime

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
