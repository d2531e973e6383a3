"""``aiapp models``: list routes and deployments, optionally ping each."""

from __future__ import annotations

from typing import Any

import typer

from aiapp.cli._common import ConfigOption, console, gateway, print_json


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def models(
        check: bool = typer.Option(
            False,
            "--check",
            help="Ping every deployment (one-token request; vLLM: GET /health and its model list).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        config: str | None = ConfigOption,
    ) -> None:
        """List routes and their deployments (the default route is starred)."""
        from rich.table import Table

        with gateway(config) as gw:
            rows: list[dict[str, Any]] = []
            for name in gw.route_names():
                route = gw.route_config(name) if name in gw.settings.routes else None
                for i, dep in enumerate(route.deployments if route else []):
                    price = gw.prices.price(dep.model)
                    rows.append(
                        {
                            "route": name,
                            "default": name == gw.settings.default_route,
                            "order": i + 1,
                            "deployment": dep.label,
                            "provider": dep.kind,
                            "key": dep.api_key_env or "",
                            "price_in_per_mtok": None if price is None else round(price.input * 1e6, 4),
                            "price_out_per_mtok": None if price is None else round(price.output * 1e6, 4),
                        }
                    )
            checks = {(c.route, c.deployment): c for c in gw.check()} if check else {}
        for row in rows:
            result = checks.get((row["route"], row["deployment"]))
            if result is not None:
                row["check"] = "ok" if result.ok else result.detail
                if result.ok and result.detail != "ok":
                    row["check_detail"] = result.detail  # vLLM: which model /health found served
                row["check_ms"] = round(result.latency_ms, 1)
        if as_json:
            print_json(rows)
        else:
            table = Table(title="routes")
            columns = ["route", "#", "deployment", "provider", "key", "$/Mtok in/out"] + (
                ["check"] if check else []
            )
            for column in columns:
                table.add_column(column)
            for row in rows:
                shown = (
                    "unknown"
                    if row["price_in_per_mtok"] is None
                    else f"{row['price_in_per_mtok']}/{row['price_out_per_mtok']}"
                )
                cells: list[str] = [
                    f"{row['route']}{' *' if row['default'] else ''}",
                    str(row["order"]),
                    row["deployment"],
                    row["provider"],
                    row["key"],
                    shown,
                ]
                if check:
                    cells.append(str(row.get("check", "")))
                table.add_row(*cells)
            console().print(table)
        if check and any(not c.ok for c in checks.values()):
            raise typer.Exit(1)
