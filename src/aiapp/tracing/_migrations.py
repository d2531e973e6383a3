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
MIGRATIONS += [
    (
        3,
        "feedback_user_and_filter_indexes",
        """
        ALTER TABLE feedback ADD COLUMN user TEXT;             -- who gave it (an app user, a key name)
        CREATE INDEX feedback_created ON feedback(created_at);
        CREATE INDEX spans_route_started ON spans(route, started_at);
        CREATE INDEX spans_prompt ON spans(prompt_ref);
        CREATE INDEX spans_roots ON spans(started_at) WHERE parent_id IS NULL
        """,
    ),
    (
        4,
        "scores",
        """
        CREATE TABLE scores (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id    TEXT NOT NULL,
            span_id     TEXT,
            name        TEXT NOT NULL,              -- the scorer (faithfulness, judge_rubric ...)
            value       REAL,                       -- NULL when unscored (the reason is the comment), never 0
            comment     TEXT,
            source      TEXT NOT NULL DEFAULT 'online',
            created_at  REAL NOT NULL
        );
        CREATE INDEX scores_trace ON scores(trace_id);
        CREATE INDEX scores_name_created ON scores(name, created_at)
        """,
    ),
]
# The console's index (aiapp ui, issue 17): the trace list reads root spans newest first, filtered by
# route, status and prompt version, without touching the table. (The dashboard reads its own rollup.)
MIGRATIONS += [
    (
        6,
        "console_trace_list_index",
        """
        CREATE INDEX spans_console_roots ON spans(started_at, route, status, prompt_ref, trace_id)
            WHERE parent_id IS NULL
        """,
    ),
]
