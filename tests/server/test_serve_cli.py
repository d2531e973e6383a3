"""`aiapp serve` is registered, lazy, and knows which hosts are loopback."""

from __future__ import annotations

from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.gateway import is_loopback


def test_serve_is_a_command_with_its_options() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--config", "--no-auth"):
        assert option in result.output


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.com")
