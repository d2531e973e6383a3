"""Resources one gateway's layers share across its routes (a cache store, a budget ledger).

Layers are built per route; what they share lives here, keyed weakly by the gateway, so it goes
away with the gateway and two gateways never share state by accident.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

_lock = threading.Lock()
_shared: weakref.WeakKeyDictionary[object, dict[str, Any]] = weakref.WeakKeyDictionary()


def per_gateway(gateway: object, name: str, factory: Callable[[], _T]) -> _T:
    """The resource ``name`` of ``gateway``, made by ``factory`` on first use."""
    with _lock:
        resources = _shared.setdefault(gateway, {})
        if name not in resources:
            resources[name] = factory()
        value: _T = resources[name]
        return value
