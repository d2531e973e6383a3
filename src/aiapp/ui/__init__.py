"""``aiapp ui``: a local web console over the trace store, eval runs, review queues and prompts.

Server-rendered pages (Starlette + Jinja2 templates, charts as inline SVG; no Node build step)::

    app = create_app()                                   # an ASGI app over $AIAPP_HOME and the repo
    # or: aiapp ui --host 127.0.0.1 --port 8765

Pages: the dashboard (model calls over time, filterable), traces (search, a trace's span tree),
evals (runs, a run's report, two runs compared), review (grading queues under ``review/``, with
inter-rater and judge-vs-human agreement) and prompts (versions, labels, preview, diff).
The console binds to 127.0.0.1 by default; :func:`check_binding` refuses other hosts without a token.
"""

from aiapp.ui._app import TOKEN_ENV, UiContext, check_binding, create_app

__all__ = ["TOKEN_ENV", "UiContext", "check_binding", "create_app"]
