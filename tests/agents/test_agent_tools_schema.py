"""@tool: schemas from signatures and docstrings, validation, injected parameters, sync and async."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from aiapp.agents import Secret, Tool, ToolContext, parse_docstring, tool
from aiapp.agents._tool import ArgumentsError
from aiapp.errors import InputError, ToolError


@tool(read_only=True)
def forecast(city: str, days: int = 3, unit: Literal["c", "f"] = "c") -> str:
    """Weather forecast for a city.

    Looks the city up in the forecast service.

    Args:
        city: The city's name, e.g. "Oslo".
        days: How many days ahead,
            counting from today.
        unit: Temperature unit.

    Returns:
        The forecast text.
    """
    return f"{city}: sunny for {days} days ({unit})"


def test_schema_comes_from_signature_and_docstring() -> None:
    spec = forecast.spec
    assert spec.name == "forecast"
    assert spec.description == "Weather forecast for a city.\n\nLooks the city up in the forecast service."
    params = spec.parameters
    assert params["type"] == "object" and params["required"] == ["city"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["city"] == {"type": "string", "description": 'The city\'s name, e.g. "Oslo".'}
    assert props["days"]["type"] == "integer" and props["days"]["default"] == 3
    assert props["days"]["description"] == "How many days ahead, counting from today."
    assert props["unit"]["enum"] == ["c", "f"]
    assert "title" not in params and all("title" not in p for p in props.values())
    assert spec.to_openai()["function"]["parameters"] is not None


def test_decorated_function_stays_callable_and_typed() -> None:
    assert isinstance(forecast, Tool) and forecast.read_only
    assert forecast("Lima", 2) == "Lima: sunny for 2 days (c)"


def test_validation_coerces_and_reports_each_problem() -> None:
    assert forecast.validate('{"city": "Oslo", "days": "5"}') == {"city": "Oslo", "days": 5, "unit": "c"}
    with pytest.raises(ArgumentsError) as err:
        forecast.validate('{"days": "many", "town": "Oslo"}')
    message = str(err.value)
    assert "city: Field required" in message
    assert "days: Input should be a valid integer" in message
    assert "town: Extra inputs are not permitted" in message
    with pytest.raises(ArgumentsError, match="not valid JSON"):
        forecast.validate('{"city": "Oslo"')
    with pytest.raises(ArgumentsError, match="must be a JSON object"):
        forecast.validate("[1, 2]")


class Ticket(BaseModel):
    title: str = Field(min_length=3)
    priority: int = Field(ge=1, le=5)


def test_pydantic_models_and_constraints_are_in_the_schema() -> None:
    @tool
    def open_ticket(ticket: Ticket, labels: list[str] | None = None) -> str:
        """Open a support ticket.

        Args:
            ticket: The ticket to open.
            labels: Optional labels.
        """
        return f"opened {ticket.title} p{ticket.priority}"

    assert not open_ticket.read_only  # side effects unless declared read-only
    params = open_ticket.spec.parameters
    assert "$defs" in params and params["$defs"]["Ticket"]["properties"]["priority"]["maximum"] == 5
    args = open_ticket.validate({"ticket": {"title": "Disk full", "priority": 2}})
    assert isinstance(args["ticket"], Ticket)
    with pytest.raises(ArgumentsError, match=r"ticket\.priority"):
        open_ticket.validate({"ticket": {"title": "Disk full", "priority": 9}})


def test_secrets_and_context_are_injected_not_described() -> None:
    seen: dict[str, object] = {}

    @tool(secrets={"token": "GITHUB_TOKEN"})
    def create_issue(title: str, token: Secret, ctx: ToolContext) -> str:
        """Create an issue.

        Args:
            title: Issue title.
        """
        seen.update(token=token.get(), user=ctx.user)
        return "created"

    assert list(create_issue.spec.parameters["properties"]) == ["title"]
    assert create_issue.secrets == {"token": "GITHUB_TOKEN"}
    args = create_issue.validate({"title": "Bug"})
    with pytest.raises(ToolError, match="needs the secret 'GITHUB_TOKEN'"):
        asyncio.run(create_issue.invoke(args))
    result = asyncio.run(
        create_issue.invoke(args, context=ToolContext(user="ana"), secrets={"GITHUB_TOKEN": Secret("t0k3n")})
    )
    assert result == "created" and seen == {"token": "t0k3n", "user": "ana"}
    # the model cannot fill an injected parameter itself
    with pytest.raises(ArgumentsError, match="token: Extra inputs"):
        create_issue.validate({"title": "Bug", "token": "forged"})


def test_secret_never_prints_its_value() -> None:
    secret = Secret("hunter22")
    assert "hunter22" not in repr(secret) and "hunter22" not in str(secret) and "hunter22" not in f"{secret}"
    assert secret.get() == "hunter22"


def test_async_tools_and_annotated_parameters() -> None:
    @tool(name="slow-add", read_only=True)
    async def add(a: Annotated[int, Field(ge=0)], b: int) -> int:
        """Add two numbers."""
        await asyncio.sleep(0)
        return a + b

    assert add.name == "slow-add" and add.schema.is_async
    assert add.spec.parameters["properties"]["a"]["minimum"] == 0
    assert asyncio.run(add.invoke(add.validate({"a": 2, "b": 3}))) == 5


def test_bad_definitions_fail_loudly() -> None:
    def star(*items: int) -> int:
        return 0

    with pytest.raises(InputError, match=r"\*args and \*\*kwargs"):
        tool(star)
    with pytest.raises(InputError, match="tool name"):
        tool(name="has space")(lambda: None)

    def documented(a: int) -> int:
        """Doc.

        Args:
            a: One.
            b: Not a parameter.
        """
        return a

    with pytest.raises(InputError, match=r"describes arguments the function does not take: \['b'\]"):
        tool(documented)


def test_docstring_parser_handles_types_and_continuations() -> None:
    doc = parse_docstring(
        """Summary line
        continued.

        Args:
            path (str): Where to look.
            depth (int, optional): How deep
                to go.

        Raises:
            ValueError: never.
        """
    )
    assert doc.summary == "Summary line continued."
    assert doc.args == {"path": "Where to look.", "depth": "How deep to go."}
