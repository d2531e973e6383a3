"""A local OpenAI-compatible HTTP server with scripted replies and fault injection (stdlib only).

It speaks enough of the OpenAI API for real clients (``openai``, ``httpx``, litellm) to run their
production code paths against it: chat completions (plain, streamed, tool calls, JSON mode),
embeddings and the model list. A small control API under ``/_stub/`` scripts replies, injects faults
(429 with ``Retry-After``, 5xx, timeouts, garbage bodies, cut connections, any status) and sets latency.

Run it in-process (a daemon thread) or, for benchmarks, in a child process::

    python -m aiapp.testing._stub_server --port 0 [--latency-ms N]   # prints "PORT <n>" first

Control endpoints (JSON bodies)::

    POST /_stub/replies  {"replies": [{"content": "..."} | {"tool_calls": [{"id", "name", "arguments"}]}]}
    POST /_stub/faults   {"faults": [{"mode": "429", "count": 2, "model": "m", "retry_after": 1}, ...]}
    POST /_stub/latency  {"ms": 50}
    POST /_stub/served   {"models": ["m1"], "health": 200, "version": "0.11.0"}   (what GET /models,
                         /health and /version answer; each key optional, "models": null = any asked)
    POST /_stub/reset
    GET  /_stub/requests -> {"requests": [{"path", "body"}, ...], "stats": {"requests", "faults_injected"}}
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess as _subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from aiapp.testing._stub_wire import (
    DEFAULT_MODEL,
    GARBAGE,
    completion_body,
    embeddings_body,
    error_body,
    plan_reply,
    stream_events,
)

FAULT_MODES = frozenset({"429", "500", "timeout", "garbage", "cut", "status", "hold"})
"""Fault modes accepted by ``inject`` (plus any three-digit status code given as the mode)."""

_MAX_LOG = 1000


# -- state --------------------------------------------------------------------------------------


class _State:
    """Everything the control API changes, behind one lock."""

    def __init__(self, latency_ms: float) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.latency_s = latency_ms / 1000
        self.replies: deque[dict[str, Any]] = deque()
        self.faults: list[dict[str, Any]] = []
        self.log: deque[dict[str, Any]] = deque(maxlen=_MAX_LOG)
        self.requests = 0
        self.faults_injected = 0
        self.models: dict[str, None] = {DEFAULT_MODEL: None}
        self.served: list[str] | None = None  # fixed model list (vLLM-like), else every model asked
        self.health = 200
        self.version: str | None = None  # GET /version answers 404 while None
        self.ids = 0
        self.release = threading.Event()  # "hold" streams wait on it before their last event
        self.holding = 0

    def admit(
        self, path: str, endpoint: str, body: dict[str, Any]
    ) -> tuple[float, dict[str, Any] | None, int]:
        """Log a model request; return (latency, the fault to apply or None, a request number)."""
        model = body.get("model")
        with self.lock:
            self.requests += 1
            self.ids += 1
            self.log.append({"path": path, "body": body})
            if isinstance(model, str) and model not in self.models and self.served is None:
                self.models[model] = None
            fault = None
            for rule in self.faults:
                if rule["model"] is not None and rule["model"] != model:
                    continue
                if rule["endpoint"] is not None and rule["endpoint"] != endpoint:
                    continue
                rule["remaining"] -= 1
                if rule["remaining"] <= 0:
                    self.faults.remove(rule)
                self.faults_injected += 1
                fault = rule
                break
            return self.latency_s, fault, self.ids

    def next_reply(self) -> dict[str, Any] | None:
        with self.lock:
            return self.replies.popleft() if self.replies else None

    def reset(self) -> None:
        with self.lock:
            self.replies.clear()
            self.faults.clear()
            self.log.clear()
            self.latency_s = 0.0
            self.served, self.health, self.version = None, 200, None
            self.requests = 0
            self.faults_injected = 0
        self.release.set()  # let any held stream finish
        self.release = threading.Event()

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "faults_injected": self.faults_injected,
            "pending_replies": len(self.replies),
            "pending_faults": sum(r["remaining"] for r in self.faults),
            "holding": self.holding,
        }


def _fault_rule(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one fault spec from the control API into a rule."""
    mode = str(spec.get("mode", ""))
    params = {k: v for k, v in spec.items() if k not in ("mode", "count", "model", "endpoint")}
    if mode.isdigit() and len(mode) == 3:
        params.setdefault("status", int(mode))
    elif mode not in FAULT_MODES:
        raise ValueError(f"unknown fault mode {mode!r}; use one of {sorted(FAULT_MODES)} or a status code")
    if mode == "status" and not isinstance(params.get("status"), int):
        raise ValueError("fault mode 'status' needs an integer 'status'")
    endpoint = spec.get("endpoint")
    if endpoint not in (None, "chat", "embeddings"):
        raise ValueError(f"fault 'endpoint' must be 'chat' or 'embeddings', got {endpoint!r}")
    count = int(spec.get("count", 1))
    if count < 1:
        raise ValueError("fault 'count' must be at least 1")
    return {"mode": mode, "remaining": count, "model": spec.get("model"), "endpoint": endpoint, **params}


# -- HTTP ---------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    state: _State

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client went away mid-request: expected with timeouts and cut connections
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    # -- plumbing --

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
        length: int | None = None,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('Status',))[0]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body) if length is None else length}",
        ]
        lines.extend(f"{k}: {v}" for k, v in headers)
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _send_json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _send_stream(self, events: list[bytes], *, complete: bool = True) -> None:
        """Send SSE events with chunked encoding; without ``complete`` stop mid-stream and hang up."""
        if complete:
            events = [*events, b"data: [DONE]\n\n"]
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
        tail = b"0\r\n\r\n" if complete else b""
        if not complete:
            self.close_connection = True
        self.wfile.write(head + b"".join(chunks) + tail)

    def _send_held_stream(self, events: list[bytes], fault: dict[str, Any]) -> None:
        """Send all but the last event, then wait for ``release()`` (or ``seconds``) to send the rest.

        A client that really streams sees its first chunks while the reply is still unfinished.
        """
        state = self.server.state
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        release = state.release
        with state.lock:
            state.holding += 1  # before the first byte leaves, so a client that sees it sees this
        try:
            for event in events[:-1]:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            release.wait(float(fault.get("seconds", 10)))
        finally:
            with state.lock:
                state.holding -= 1
        rest = [events[-1], b"data: [DONE]\n\n"]
        self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in rest) + b"0\r\n\r\n")

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, error_body("request body is not valid JSON", "invalid_request_error"))
            return None
        if not isinstance(value, dict):
            self._send(400, error_body("request body must be a JSON object", "invalid_request_error"))
            return None
        return value

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    # -- methods --

    def do_GET(self) -> None:
        """Serve the model list, health and the request log."""
        try:
            route = self._route()
            state = self.server.state
            if route == "/models":
                with state.lock:
                    names = list(state.models) if state.served is None else list(state.served)
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in names]
                self._send_json({"object": "list", "data": data})
            elif route == "/health" and state.health != 200:
                self._send(state.health, b"")
            elif route == "/health":
                self._send_json({"status": "ok"})
            elif route == "/version" and state.version is not None:
                self._send_json({"version": state.version})
            elif route == "/_stub/requests":
                with state.lock:
                    self._send_json({"requests": list(state.log), "stats": state.stats()})
            else:
                self._not_found()
        except OSError:
            self.close_connection = True

    def do_POST(self) -> None:
        """Serve chat completions, embeddings and the control API."""
        try:
            body = self._read_json()
            if body is None:
                return
            route = self._route()
            if route == "/chat/completions":
                self._model_request(route, "chat", body)
            elif route == "/embeddings":
                self._model_request(route, "embeddings", body)
            elif route.startswith("/_stub/"):
                self._control(route, body)
            else:
                self._not_found()
        except OSError:
            self.close_connection = True

    def _not_found(self) -> None:
        self._send(
            404, error_body(f"no route for {self.command} {self.path}", "invalid_request_error", "not_found")
        )

    def _control(self, route: str, body: dict[str, Any]) -> None:
        state = self.server.state
        try:
            if route == "/_stub/replies":
                replies = [r if isinstance(r, dict) else {"content": str(r)} for r in body.get("replies", [])]
                with state.lock:
                    state.replies.extend(replies)
                self._send_json({"queued": len(replies)})
            elif route == "/_stub/faults":
                rules = [_fault_rule(f) for f in body.get("faults", [])]
                with state.lock:
                    state.faults.extend(rules)
                self._send_json({"queued": len(rules)})
            elif route == "/_stub/latency":
                with state.lock:
                    state.latency_s = float(body.get("ms", 0)) / 1000
                self._send_json({"ms": state.latency_s * 1000})
            elif route == "/_stub/served":
                with state.lock:
                    if "models" in body:
                        models = body["models"]
                        state.served = None if models is None else [str(m) for m in models]
                    state.health = int(body.get("health", state.health))
                    state.version = body.get("version", state.version)
                self._send_json({"served": state.served, "health": state.health})
            elif route == "/_stub/release":
                state.release.set()
                self._send_json({"released": True})
            elif route == "/_stub/reset":
                state.reset()
                self._send_json({"reset": True})
            else:
                self._not_found()
        except (ValueError, TypeError, KeyError) as exc:
            self._send(400, error_body(f"bad control request: {exc}", "invalid_request_error"))

    def _model_request(self, route: str, endpoint: str, body: dict[str, Any]) -> None:
        state = self.server.state
        latency, fault, n = state.admit(route, endpoint, body)
        if latency > 0 and state.stopping.wait(latency):
            self.close_connection = True
            return
        stream = bool(body.get("stream")) and endpoint == "chat"
        if fault is not None:
            mode = fault["mode"]
            if mode == "timeout":
                if state.stopping.wait(float(fault.get("seconds", 30))):
                    self.close_connection = True
                    return
            elif mode == "garbage":
                if stream:
                    self._send_stream([b"data: " + GARBAGE + b"\n\n"])
                else:
                    self._send(200, GARBAGE)
                return
            elif mode == "hold" and stream:
                content, calls, finish = plan_reply(body, state.next_reply())
                self._send_held_stream(stream_events(body, n, content, calls, finish), fault)
                return
            elif mode == "cut":
                if stream:
                    content, calls, finish = plan_reply(body, None)
                    events = stream_events(body, n, content, calls, finish)
                    self._send_stream(
                        events[: max(1, min(int(fault.get("after", 2)), len(events) - 1))], complete=False
                    )
                else:
                    full = (
                        completion_body(body, n, *plan_reply(body, None))
                        if endpoint == "chat"
                        else embeddings_body(body)
                    )
                    self.close_connection = True
                    self._send(200, full[: len(full) // 2], length=len(full))
                return
            else:
                self._send_fault(fault)
                return
        if endpoint == "embeddings":
            self._send(200, embeddings_body(body))
            return
        content, calls, finish = plan_reply(body, state.next_reply())
        if stream:
            self._send_stream(stream_events(body, n, content, calls, finish))
        else:
            self._send(200, completion_body(body, n, content, calls, finish))

    def _send_fault(self, fault: dict[str, Any]) -> None:
        status = 429 if fault["mode"] == "429" else int(fault.get("status", 500))
        headers: list[tuple[str, str]] = []
        retry_after = fault.get("retry_after", 1 if status == 429 else None)
        if retry_after is not None:
            value = float(retry_after)
            headers.append(("Retry-After", str(int(value)) if value.is_integer() else str(value)))
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
        }.get(status, "server_error" if status >= 500 else "invalid_request_error")
        message = str(fault.get("message") or f"stub injected HTTP {status}")
        code = "rate_limit_exceeded" if status == 429 else None
        self._send(status, error_body(message, kind, code), headers=headers)


# -- Python API ---------------------------------------------------------------------------------


class StubServer:
    """A local OpenAI-compatible server for tests and benchmarks.

    In-process (the default) it serves from a daemon thread; with ``subprocess=True`` (or
    :meth:`spawn`) it runs in a child process so that it does not share the client's GIL. Both modes
    are scripted the same way: every control method is an HTTP call to the ``/_stub/`` API.

    Example:
        >>> with StubServer() as stub:  # doctest: +SKIP
        ...     stub.queue_replies("hello")
        ...     stub.inject("429", retry_after=2)
        ...     client = openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=0)

    Args:
        host: Interface to bind.
        port: Port to bind; ``0`` picks a free one (read it from :attr:`port`).
        latency_ms: Base latency added to every chat and embedding request.
        subprocess: Serve from a child process (``python -m aiapp.testing._stub_server``).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0, subprocess: bool = False
    ) -> None:
        self.host = host
        self._requested_port = port
        self._latency_ms = latency_ms
        self._subprocess = subprocess
        self._port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._proc: _subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @classmethod
    def spawn(cls, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0) -> StubServer:
        """Start a server in a child process and return it, started; call :meth:`stop` when done."""
        return cls(host, port, latency_ms=latency_ms, subprocess=True).start()

    # -- lifecycle --

    def start(self) -> StubServer:
        """Bind and start serving; returns ``self``."""
        if self._port is not None:
            return self
        if self._subprocess:
            self._start_process()
        else:
            server = _make_server(self.host, self._requested_port, self._latency_ms)
            self._server = server
            self._port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="aiapp-stub-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def _start_process(self) -> None:
        src = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        cmd = [sys.executable, "-m", "aiapp.testing._stub_server", "--host", self.host]
        cmd += ["--port", str(self._requested_port), "--latency-ms", str(self._latency_ms)]
        self._proc = _subprocess.Popen(cmd, stdout=_subprocess.PIPE, stderr=self._stderr, env=env)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self._proc.kill()
            self._proc.wait()
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            self.stop()
            raise RuntimeError(f"stub server process did not start (first line {line!r}):\n{err}")
        self._port = int(line.split()[1])

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call more than once."""
        if self._server is not None:
            self._server.state.stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except _subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._port = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --

    @property
    def port(self) -> int:
        """The bound port; ``RuntimeError`` before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("StubServer is not started; call start() or use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:8123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        return self.url + "/v1"

    # -- control --

    def queue_replies(self, *replies: Any) -> None:
        """Script the next chat replies, consumed in order by chat requests.

        Each reply is a ``str`` (text), a ``ToolCall`` or list of them (a tool-call reply), a
        ``Completion`` (text and tool calls), or a dict ``{"content": ..., "tool_calls": [...],
        "finish_reason": ...}`` with tool calls as ``{"id", "name", "arguments"}``.
        """
        self._control("POST", "/_stub/replies", {"replies": [_reply_spec(r) for r in replies]})

    def inject(self, mode: str, *, count: int = 1, model: str | None = None, **params: Any) -> None:
        """Queue a fault for the next ``count`` matching chat/embedding requests.

        Args:
            mode: ``"429"`` (``retry_after`` seconds, default 1), ``"500"`` or any status code as a
                string, ``"status"`` (with ``status=N``), ``"timeout"`` (sleep ``seconds``, default 30,
                then answer), ``"garbage"`` (200 with a non-JSON body), ``"cut"`` (hang up mid-reply;
                ``after`` chunks for streams), ``"hold"`` (a stream that sends all but its last event,
                then waits for :meth:`release`, or ``seconds``, default 10).
            count: How many matching requests the fault applies to.
            model: Only requests for this model match; ``None`` matches all.
            **params: Mode parameters, plus ``endpoint="chat"|"embeddings"`` to match one endpoint and
                ``message`` for the error text.
        """
        self._control(
            "POST", "/_stub/faults", {"faults": [{"mode": mode, "count": count, "model": model, **params}]}
        )

    def serve(
        self, models: list[str] | None = None, *, health: int = 200, version: str | None = None
    ) -> None:
        """Answer like a vLLM server: ``GET /models`` lists ``models``, ``/health`` ``health``.

        Args:
            models: The fixed model list (``[]``: none); ``None`` lists every model asked for.
            health: The status ``GET /health`` answers.
            version: What ``GET /version`` says (``None``: 404, as plain OpenAI servers do).
        """
        self._control("POST", "/_stub/served", {"models": models, "health": health, "version": version})

    def release(self) -> None:
        """Let streams held by an injected ``"hold"`` fault send their last event."""
        self._control("POST", "/_stub/release", {})

    def set_latency(self, ms: float) -> None:
        """Add ``ms`` milliseconds before every chat and embedding reply."""
        self._control("POST", "/_stub/latency", {"ms": ms})

    def reset(self) -> None:
        """Clear scripted replies, faults, latency, the request log and counters."""
        self._control("POST", "/_stub/reset", {})

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The logged request bodies (the last 1000), oldest first.

        Args:
            endpoint: ``"chat"`` or ``"embeddings"`` to keep only those requests.
        """
        entries = self._control("GET", "/_stub/requests")["requests"]
        suffix = {"chat": "/chat/completions", "embeddings": "/embeddings", None: ""}[endpoint]
        return [e["body"] for e in entries if e["path"].endswith(suffix)]

    def stats(self) -> dict[str, int]:
        """Counters: ``requests`` (model requests), ``faults_injected``, ``pending_replies``/``_faults``."""
        stats: dict[str, int] = self._control("GET", "/_stub/requests")["stats"]
        return stats

    def _control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            body = json.dumps(payload).encode() if payload is not None else None
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read() or b"null")
        finally:
            conn.close()
        if response.status != 200:
            raise ValueError(f"stub control {method} {path} failed: HTTP {response.status}: {data}")
        return data

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "not started"
        return f"<StubServer {where}{' (subprocess)' if self._subprocess else ''}>"


def _reply_spec(reply: Any) -> dict[str, Any]:
    from aiapp.types import Completion, ToolCall

    if isinstance(reply, str):
        return {"content": reply}
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, ToolCall):
        reply = [reply]
    if isinstance(reply, list | tuple) and all(isinstance(c, ToolCall) for c in reply):
        return {"tool_calls": [c.model_dump() for c in reply]}
    if isinstance(reply, Completion):
        spec: dict[str, Any] = {"content": reply.text, "finish_reason": reply.finish_reason}
        if reply.tool_calls:
            spec["tool_calls"] = [c.model_dump() for c in reply.tool_calls]
        return spec
    raise TypeError(f"cannot script a stub reply from {type(reply).__name__}")


def _make_server(host: str, port: int, latency_ms: float) -> _Server:
    server = _Server((host, port), _Handler)
    server.state = _State(latency_ms)
    return server


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: serve until killed, printing ``PORT <n>`` as the first stdout line."""
    parser = argparse.ArgumentParser(
        prog="python -m aiapp.testing._stub_server", description=(__doc__ or "").split("\n", 1)[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = _make_server(args.host, args.port, args.latency_ms)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
