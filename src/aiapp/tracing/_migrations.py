"""Numbered schema migrations for the trace store. Append only: never edit a shipped migration."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "spans",
        """
        CREATE TABLE spans (
            span_id        TEXT PRIMARY KEY,
            trace_id       TEXT NOT NULL,
            parent_id      TEXT,
            kind           TEXT NOT NULL,          -- llm, retrieval, tool, agent, app, guard ...
            name           TEXT NOT NULL,
            started_at     REAL NOT NULL,          -- unix seconds
            duration_ms    REAL NOT NULL,
            status         TEXT NOT NULL,          -- ok | error
            error          TEXT,
            route          TEXT,
            model          TEXT,                   -- deployment that answered
            deployments    TEXT,                   -- JSON list of deployments tried, in order
            attempts       INTEGER,
            input_tokens   INTEGER,
            output_tokens  INTEGER,
            cost_usd       REAL,                   -- NULL when the price is unknown
            cache_hit      INTEGER,
            prompt_ref     TEXT,                   -- name@version
            prompt_hash    TEXT,
            config_hash    TEXT,
            input          TEXT,                   -- JSON (messages, query ...) unless store_content is off
            output         TEXT,
            attributes     TEXT                    -- JSON
        );
        CREATE INDEX spans_trace ON spans(trace_id);
        CREATE INDEX spans_started ON spans(started_at);
        """,
    ),
    (
        2,
        "feedback",
        """
        CREATE TABLE feedback (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id    TEXT NOT NULL,
            score       REAL NOT NULL,
            comment     TEXT,
            source      TEXT NOT NULL DEFAULT 'user',
            created_at  REAL NOT NULL
        );
        CREATE INDEX feedback_trace ON feedback(trace_id);
        """,
    ),
]
