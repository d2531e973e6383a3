"""Read-only SQL over a SQLite file.

Three locks, each enough on its own: the file is opened ``mode=ro`` (SQLite refuses every write),
``PRAGMA query_only`` is set, and an authorizer allows only reading (``SELECT``, reading columns,
functions, recursive CTEs) — so ``INSERT``, ``UPDATE``, ``DELETE``, ``CREATE``, ``DROP``, ``ATTACH``
and ``PRAGMA`` are refused before they run. A progress handler aborts queries that run too long,
and results are capped at ``max_rows``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from aiapp.agents._tool import Tool
from aiapp.errors import InputError, ToolError

_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_CHECK_EVERY = 1000  # virtual-machine instructions between progress checks


def _authorize(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action not in _ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def connect_read_only(path: Path | str) -> sqlite3.Connection:
    """Open a SQLite file so that nothing can be written through the connection.

    Raises:
        InputError: when the file does not exist or is not a SQLite database.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise InputError(f"no SQLite database at {file}")
    try:
        conn = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{file} is not a readable SQLite database: {exc}") from exc
    conn.set_authorizer(_authorize)
    return conn


def describe(path: Path | str) -> str:
    """``table(column type, ...)`` for every table and view, one per line."""
    conn = connect_read_only(path)
    try:
        conn.set_authorizer(None)
        names = conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        ).fetchall()
        lines = []
        for (name,) in names:
            columns = conn.execute(f"SELECT name, type FROM pragma_table_info({_quote(name)})").fetchall()
            lines.append(f"{name}({', '.join(f'{c} {t}'.strip() for c, t in columns)})")
        return "\n".join(lines)
    finally:
        conn.close()


def run_query(path: Path | str, query: str, *, max_rows: int = 50, max_instructions: int = 10_000_000) -> str:
    """Run one read-only query; the result as JSON ``{"columns", "rows", "truncated"}``.

    Raises:
        ToolError: for writes, syntax errors, several statements, or a query that runs too long.
    """
    conn = connect_read_only(path)
    budget = [max_instructions // _CHECK_EVERY]

    def progress() -> int:
        budget[0] -= 1
        return 1 if budget[0] < 0 else 0

    conn.set_progress_handler(progress, _CHECK_EVERY)
    try:
        cursor = conn.execute(query)
        columns = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchmany(max_rows + 1)
    except (sqlite3.DatabaseError, sqlite3.Warning) as exc:  # Warning: more than one statement
        message = str(exc)
        if "not authorized" in message or "readonly" in message or "query_only" in message:
            message = "only reading is allowed (a single SELECT or WITH query)"
        elif "interrupted" in message:
            message = "the query ran too long and was stopped; add a LIMIT or a narrower WHERE"
        raise ToolError(f"SQL error: {message}", tool="sql") from exc
    finally:
        conn.close()
    truncated = len(rows) > max_rows
    data = {"columns": columns, "rows": [list(r) for r in rows[:max_rows]], "truncated": truncated}
    return json.dumps(data, ensure_ascii=False, default=str)


def sql_tool(
    path: Path | str, *, name: str = "sql", max_rows: int = 50, description: str | None = None
) -> Tool:
    """A read-only SQL tool over the SQLite file at ``path``; its description lists the schema.

    Args:
        path: The database file (it must exist).
        name: The tool's name.
        max_rows: Most rows returned per query (the result says when it was cut).
        description: Replaces the generated description.

    Raises:
        InputError: when ``path`` is not a readable SQLite database.
    """
    db = Path(path).expanduser().resolve()
    schema = describe(db)
    text = description or (
        f"Run one read-only SQL query (SQLite dialect, SELECT or WITH only) on the database {db.name}. "
        f"At most {max_rows} rows come back. Tables:\n{schema or '(none)'}"
    )

    def query_database(query: str) -> str:
        """Run a read-only SQL query.

        Args:
            query: One SQLite SELECT (or WITH ... SELECT) statement.
        """
        return run_query(db, query, max_rows=max_rows)

    return Tool(query_database, name=name, description=text, read_only=True)


def _quote(identifier: str) -> str:
    return "'" + identifier.replace("'", "''") + "'"
