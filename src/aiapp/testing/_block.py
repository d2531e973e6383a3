"""``block_provider_calls``: make any real provider call inside a test raise instead of spending money."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiapp.gateway._allow import pop_block, push_block


@contextmanager
def block_provider_calls(*, allow_loopback: bool = True) -> Iterator[None]:
    """Inside the block, a call that would reach a real provider raises ``ProviderCallBlockedError``.

    Nothing is sent. Fakes and caches answer as usual; calls to loopback servers (the
    :class:`~aiapp.testing.StubServer`, a local vLLM) stay allowed unless ``allow_loopback=False``.
    The environment variable ``AIAPP_BLOCK_PROVIDER_CALLS=1`` does the same for a whole process,
    e.g. in CI. Use it as a context manager or around a whole test session (``conftest.py``)::

        @pytest.fixture(autouse=True, scope="session")
        def _no_real_calls():
            with block_provider_calls():
                yield
    """
    push_block(allow_loopback=allow_loopback)
    try:
        yield
    finally:
        pop_block()
