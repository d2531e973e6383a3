"""Built-in tools: the safe calculator, read-only SQL, allowlisted HTTP GET, search formatting."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from agent_helpers import KeywordRetriever

from aiapp.agents.tools import calculator, evaluate, http_get_tool, is_allowed, search_tool, sql_tool
from aiapp.errors import InputError, ToolError

# -- calculator ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-2 ** 2", -4),
        ("2 ^ 10", 1024),
        ("sqrt(16) + abs(-1)", 5.0),
        ("round(pi, 2)", 3.14),
        ("max(1, 5, 3) % 4", 1),
    ],
)
def test_calculator_computes(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo hi')", "not allowed"),
        ("().__class__", "not allowed"),
        ("open('/etc/passwd')", "not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "not allowed"),
        ("[i for i in range(10)]", "not allowed"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "exponents above"),
        ("10 ** 999", "more than 400 digits"),
        ("round(5, -10 ** 9)", "between -15 and 15"),
        ("1 +", "not a valid arithmetic expression"),
        ("1" * 600, "longer than"),
    ],
)
def test_calculator_refuses_anything_but_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


def test_calculator_tool_formats_results() -> None:
    assert calculator.read_only
    assert calculator("6 * 7") == "42" and calculator("1 / 4") == "0.25" and calculator("2.0 * 3") == "6"


# -- read-only SQL ---------------------------------------------------------------------------------


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL)")
        db.executemany(
            "INSERT INTO orders (customer, total) VALUES (?, ?)", [("ana", 30.0), ("bob", 12.5)] * 3
        )
    return path


def test_sql_tool_reads_and_describes_the_schema(shop_db: Path) -> None:
    sql = sql_tool(shop_db, max_rows=4)
    assert sql.read_only and "orders(id INTEGER, customer TEXT, total REAL)" in sql.description
    out = json.loads(
        sql("SELECT customer, SUM(total) AS spent FROM orders GROUP BY customer ORDER BY customer")
    )
    assert out == {
        "columns": ["customer", "spent"],
        "rows": [["ana", 90.0], ["bob", 37.5]],
        "truncated": False,
    }
    assert json.loads(sql("SELECT * FROM orders"))["truncated"] is True
    with_cte = json.loads(sql("WITH t AS (SELECT total FROM orders) SELECT COUNT(*) FROM t"))
    assert with_cte["rows"] == [[6]]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM orders",
        "UPDATE orders SET total = 0",
        "INSERT INTO orders (customer, total) VALUES ('eve', 1)",
        "DROP TABLE orders",
        "CREATE TABLE x (a)",
        "ATTACH DATABASE '/tmp/other.db' AS other",
        "PRAGMA writable_schema = ON",
        "SELECT 1; DELETE FROM orders",
    ],
)
def test_sql_tool_refuses_every_write(shop_db: Path, statement: str) -> None:
    sql = sql_tool(shop_db)
    with pytest.raises(ToolError, match="SQL error"):
        sql(statement)
    with sqlite3.connect(shop_db) as db:
        assert db.execute("SELECT COUNT(*) FROM orders").fetchone() == (6,)


def test_sql_tool_stops_runaway_queries(shop_db: Path) -> None:
    from aiapp.agents.tools import run_query

    runaway = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n"
    with pytest.raises(ToolError, match="ran too long"):
        run_query(shop_db, runaway, max_instructions=100_000)


def test_sql_tool_needs_a_database(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no SQLite database"):
        sql_tool(tmp_path / "missing.db")
    (tmp_path / "notes.txt").write_text("not a database at all, just some text" * 20)
    with pytest.raises(InputError, match="not a readable SQLite database"):
        sql_tool(tmp_path / "notes.txt")


# -- HTTP GET --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/docs/page":
            body = b"Ollama listens on port 11434."
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/docs/elsewhere":
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/docs/image":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"\x89PNG")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_get_is_off_by_default() -> None:
    with pytest.raises(InputError, match="off by default"):
        http_get_tool([])


def test_http_get_fetches_only_allowlisted_urls(site: str) -> None:
    fetch = http_get_tool([f"{site}/docs/"])
    assert fetch.read_only and site in fetch.description
    page = asyncio.run(fetch.invoke({"url": f"{site}/docs/page"}))
    assert page.startswith("HTTP 200") and "port 11434" in page
    with pytest.raises(ToolError, match="not on the allowlist"):
        asyncio.run(fetch.invoke({"url": f"{site}/admin"}))
    with pytest.raises(ToolError, match="http://localhost:1/steal is not on the allowlist"):
        asyncio.run(fetch.invoke({"url": f"{site}/docs/elsewhere"}))  # redirects are checked too
    with pytest.raises(ToolError, match="not text"):
        asyncio.run(fetch.invoke({"url": f"{site}/docs/image"}))


def test_http_get_against_the_stub_server(stub: object) -> None:
    base = stub.url  # type: ignore[attr-defined]
    fetch = http_get_tool([base.split("://", 1)[1].split(":")[0]])  # a bare host allows any path
    health = asyncio.run(fetch.invoke({"url": f"{base}/health"}))
    assert '"status": "ok"' in health or '"status":"ok"' in health


def test_allowlist_matching() -> None:
    allow = ["https://docs.ollama.com/api", "example.org"]
    assert is_allowed("https://docs.ollama.com/api/chat", allow)
    assert is_allowed("https://docs.ollama.com/api", allow)
    assert not is_allowed("https://docs.ollama.com/apikeys", allow)
    assert not is_allowed("http://docs.ollama.com/api/chat", allow)
    assert is_allowed("http://example.org/anything", allow)
    assert not is_allowed("https://example.org.evil.com/", allow)
    assert not is_allowed("file:///etc/passwd", allow)
    assert not is_allowed("ftp://example.org/x", allow)


# -- search ----------------------------------------------------------------------------------------


def test_search_tool_formats_numbered_sources() -> None:
    search = search_tool(KeywordRetriever(), k=2)
    out = search("ollama port")
    assert out.startswith("[1] docs/faq.md\nOllama binds to 127.0.0.1 port 11434")
    assert search("zebra") == "No results."


def test_build_tools_by_name(tmp_path: Path) -> None:
    from aiapp.agents.tools import build_tools

    tools = build_tools(["calculator", "search"], retriever=KeywordRetriever(), approve_all=True)
    assert [t.name for t in tools] == ["calculator", "search"] and all(t.requires_approval for t in tools)
    assert build_tools(["http"], allow_urls=["example.org"])[0].requires_approval
    with pytest.raises(InputError, match="unknown tools"):
        build_tools(["browser"])
    with pytest.raises(InputError, match="needs an index"):
        build_tools(["search"])


def test_build_agent_from_names() -> None:
    from agent_helpers import gateway

    from aiapp.agents import build_agent
    from aiapp.testing import FakeModel

    gw = gateway(m=FakeModel(["ok"]))
    agent = build_agent(
        gw, route="m", tools=["calculator", "search"], retriever=KeywordRetriever(), max_steps=4
    )
    assert sorted(agent.tools) == ["calculator", "search"] and agent.limits.max_steps == 4
    assert agent.prefetch == ()  # the fake model calls tools natively
    with pytest.raises(InputError, match="unknown agent options"):
        build_agent(gw, route="m", tools=["calculator"], temperature=0)
    baseline = build_agent(gateway(), tools=["search"], retriever=KeywordRetriever(), name="b")
    assert baseline.prefetch == ("search",) and baseline.name == "b"
