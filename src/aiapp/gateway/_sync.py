"""The one bridge from sync code to the async core: :func:`run_sync` and :func:`iter_sync`.

Everything that talks to a model is async. The sync calls users make (``Gateway.complete``,
``RAGApp.ask``, ``Agent.run``, ``evals.run``) run their coroutine here, on a **persistent** event
loop, so connection pools and clients opened by one call are reused by the next (``asyncio.run``
per call would build and tear down a loop, and every HTTP pool with it, each time):

- In a thread with no running loop (scripts, the CLI, worker threads), the coroutine runs on
  that thread's own loop, created once and kept (one loop per thread).
- Inside a running loop (Jupyter, an async web handler calling sync code), blocking that loop on
  itself would deadlock, so the coroutine runs on one shared background loop thread and the
  caller waits. A sync call made from *that* thread again (sync code nested twice) gets a
  short-lived private loop in a helper thread, the only case that pays for a new loop.

Streams are stepped one item at a time (:func:`iter_sync`), so a sync caller sees each chunk as
it arrives. Every step of one stream runs in the same :class:`contextvars.Context`, so a span or
other context variable set inside the async generator is still valid when it is reset.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

_T = TypeVar("_T")

_local = threading.local()
_background_lock = threading.Lock()
_background: asyncio.AbstractEventLoop | None = None


class _LoopHolder:
    """Owns one thread's loop; when the thread ends (or the process exits) the loop is shut down
    the way ``asyncio.run`` would: pending tasks cancelled, async generators closed, loop closed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def shutdown(self) -> None:
        loop = self.loop
        if loop.is_closed() or loop.is_running():
            return
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except RuntimeError:  # finalized inside another running loop: just close
            pass
        finally:
            loop.close()

    def __del__(self) -> None:
        self.shutdown()


_holders: weakref.WeakSet[_LoopHolder] = weakref.WeakSet()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's persistent loop (made on first use; replaced if someone closed it)."""
    holder: _LoopHolder | None = getattr(_local, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _LoopHolder()
        _local.holder = holder
        _holders.add(holder)
    return holder.loop


@atexit.register
def _shutdown_loops() -> None:
    for holder in list(_holders):
        holder.shutdown()


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared loop thread that serves sync calls made from inside a running loop."""
    global _background
    with _background_lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="aiapp-loop", daemon=True)
            thread.start()
            _background = loop
        return _background


def _submit(
    awaitable: Awaitable[_T], loop: asyncio.AbstractEventLoop, context: contextvars.Context
) -> concurrent.futures.Future[_T]:
    """Run ``awaitable`` on another thread's running ``loop`` inside ``context``."""
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(_wrap(awaitable), context=context)

        def done(t: asyncio.Task[_T]) -> None:
            if t.cancelled():
                future.cancel()
            elif (exc := t.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(t.result())

        task.add_done_callback(done)

    loop.call_soon_threadsafe(start)
    return future


class _Runner:
    """Runs awaitables for one sync caller in a fixed context, on the right loop for its thread."""

    def __init__(self) -> None:
        self.context = contextvars.copy_context()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        self.loop: asyncio.AbstractEventLoop | None
        if running is None:
            self.loop, self.remote = _thread_loop(), False
        elif running is not _background:
            self.loop, self.remote = background_loop(), True
        else:
            self.loop, self.remote = None, True  # nested twice: a private loop per step

    def run(self, awaitable: Awaitable[_T]) -> _T:
        if not self.remote:
            assert self.loop is not None
            task = self.loop.create_task(_wrap(awaitable), context=self.context)
            return self.loop.run_until_complete(task)
        if self.loop is not None:
            return _submit(awaitable, self.loop, self.context).result()
        return _in_private_thread(awaitable, self.context)


async def _wrap(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


def _in_private_thread(awaitable: Awaitable[_T], context: contextvars.Context) -> _T:
    out: list[_T] = []
    err: list[BaseException] = []

    def target() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(_wrap(awaitable), context=context)
            out.append(loop.run_until_complete(task))
        except BaseException as exc:  # re-raised in the caller's thread
            err.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if err:
        raise err[0]
    return out[0]


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code and return its result.

    Works with or without a running event loop in the calling thread (see the module docstring).
    Context variables set by the caller (tracing spans, call context) are visible to the coroutine.
    """
    return _Runner().run(coro)


def iter_sync(agen: AsyncIterator[_T]) -> Iterator[_T]:
    """Drive an async iterator from sync code, yielding each item as soon as it is produced.

    If the caller stops early (``break``, garbage collection), the async generator is closed on
    the loop that ran it, so its ``finally`` blocks (trace writes, budget settlement) still run.
    """
    runner = _Runner()
    iterator = agen.__aiter__()
    finished = False
    try:
        while True:
            try:
                item = runner.run(iterator.__anext__())
            except StopAsyncIteration:
                finished = True
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if not finished and aclose is not None:
            runner.run(aclose())


_P = ParamSpec("_P")


def sync_method(method: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, _T]:
    """The sync twin of an async method, made rather than written: ``complete = sync_method(acomplete)``.

    It takes the same arguments (typed through ``ParamSpec``) and runs the async method of the
    *instance* through :func:`run_sync`, so a subclass that overrides the async method is called.
    """
    name = method.__name__

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        bound: Callable[..., Coroutine[Any, Any, _T]] = getattr(args[0], name)
        return run_sync(bound(*args[1:], **kwargs))

    call.__name__ = call.__qualname__ = name.removeprefix("a")
    call.__doc__ = f"Sync :meth:`{name}` (on a persistent event loop; also inside Jupyter).\n\n{_doc(method)}"
    return call


def sync_iterator(method: Callable[_P, AsyncIterator[_T]]) -> Callable[_P, Iterator[_T]]:
    """The sync twin of an async-generator method: items are yielded as they arrive (:func:`iter_sync`)."""
    name = method.__name__

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> Iterator[_T]:
        bound: Callable[..., AsyncIterator[_T]] = getattr(args[0], name)
        return iter_sync(bound(*args[1:], **kwargs))

    call.__name__ = call.__qualname__ = name.removeprefix("a")
    call.__doc__ = f"Sync :meth:`{name}`, item by item as they arrive.\n\n{_doc(method)}"
    return call


def _doc(method: Callable[..., Any]) -> str:
    return inspect.cleandoc(method.__doc__ or "")
