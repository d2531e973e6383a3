"""The ``aiapp`` command line: a thin client over the public API, one module per command group."""

from aiapp.cli._app import app, main

__all__ = ["app", "main"]
