"""Structured output: call a prompt that declares JSON output, validate the reply, repair once.

>>> result = complete_structured(gw, registry.get("ticket_triage"), {"ticket": "GPU not found"})
>>> result.data["category"], result.attempts, result.trace_id

The reply is decoded as JSON (a code fence is stripped) and validated against the prompt's JSON
schema (and against a pydantic model when ``output_type`` is given). An invalid reply gets exactly
one repair attempt: the reply and what was wrong with it go back to the model. If the second reply
is still invalid, :class:`~aiapp.errors.OutputParseError` carries it (``raw``). Both calls share one
trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pydantic import BaseModel, ValidationError

from aiapp.errors import OutputParseError
from aiapp.prompts._model import Prompt
from aiapp.types import CallOptions, Completion, Message

if TYPE_CHECKING:
    from aiapp.gateway import Gateway

__all__ = ["REPAIR_INSTRUCTION", "StructuredOutput", "complete_structured", "parse_output"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

REPAIR_INSTRUCTION = (
    "Your previous reply could not be used: {error}\n"
    "Reply again with only the corrected JSON value, no explanation and no code fence."
)
"""The message sent back to the model for the repair attempt (``{error}`` is filled in)."""


@dataclass(frozen=True)
class StructuredOutput(Generic[T]):
    """A validated structured reply.

    Attributes:
        data: The decoded JSON value, or the ``output_type`` instance.
        completion: The completion the data came from (the repaired one after a repair).
        attempts: 1, or 2 when the first reply needed the repair attempt.
    """

    data: T
    completion: Completion
    attempts: int

    @property
    def trace_id(self) -> str | None:
        """The trace both attempts were recorded under."""
        return self.completion.trace_id


def parse_output(prompt: Prompt, text: str, output_type: type[BaseModel] | None = None) -> Any:
    """Decode and validate a reply to ``prompt``.

    Args:
        prompt: The prompt whose ``output`` declares the JSON (schema) expected.
        text: The model's reply.
        output_type: A pydantic model the value must also validate against.

    Returns:
        The JSON value, or an ``output_type`` instance.

    Raises:
        OutputParseError: not JSON, or not valid against the schema/model; ``raw`` is ``text``.
    """
    data = Completion(text=text).json_data()
    schema = prompt.output.json_schema
    if schema is not None:
        from aiapp.prompts._schema import schema_errors

        errors = schema_errors(data, schema)
        if errors:
            raise OutputParseError(
                f"reply does not match the output schema of {prompt.ref}: {'; '.join(errors)}", raw=text
            )
    if output_type is None:
        return data
    try:
        return output_type.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise OutputParseError(f"reply does not match {output_type.__name__}: {problems}", raw=text) from exc


@overload
def complete_structured(
    gateway: Gateway,
    prompt: Prompt,
    variables: Mapping[str, Any] | None = None,
    *,
    output_type: type[M],
    model: str | None = None,
    options: CallOptions | None = None,
    repair: bool = True,
    metadata: dict[str, Any] | None = None,
) -> StructuredOutput[M]: ...


@overload
def complete_structured(
    gateway: Gateway,
    prompt: Prompt,
    variables: Mapping[str, Any] | None = None,
    *,
    output_type: None = None,
    model: str | None = None,
    options: CallOptions | None = None,
    repair: bool = True,
    metadata: dict[str, Any] | None = None,
) -> StructuredOutput[Any]: ...


def complete_structured(
    gateway: Gateway,
    prompt: Prompt,
    variables: Mapping[str, Any] | None = None,
    *,
    output_type: type[BaseModel] | None = None,
    model: str | None = None,
    options: CallOptions | None = None,
    repair: bool = True,
    metadata: dict[str, Any] | None = None,
) -> StructuredOutput[Any]:
    """Render ``prompt``, call the gateway, and return the validated JSON reply.

    Args:
        gateway: The gateway to call.
        prompt: A prompt; its ``output`` schema (if any) is sent as the response format and enforced.
        variables: Template variables.
        output_type: A pydantic model the reply must also match (its schema is used when the prompt
            declares none).
        model: Route override (default: the prompt's ``model``, else the gateway's default route).
        options: Call options overlaid on the prompt's ``params``.
        repair: Allow the one repair attempt (``False``: fail on the first invalid reply).
        metadata: Extra attributes for the trace.

    Raises:
        OutputParseError: the reply (after the repair attempt) is not valid; ``raw`` keeps it.
        PromptError: the prompt cannot be rendered with ``variables``.
        ProviderError: the model call failed.
    """
    messages = prompt.render(variables or {})
    opts = prompt.call_options(options)
    if output_type is not None and prompt.output.json_schema is None:
        from aiapp.types import ResponseFormat

        opts = opts.merged(CallOptions(response_format=ResponseFormat.from_model(output_type)))
    route = model or prompt.model
    call_meta = {**(metadata or {}), "structured": True}
    with gateway.tracer.span(
        "app", f"structured {prompt.ref}", prompt_ref=prompt.ref, prompt_hash=prompt.content_hash
    ) as span:
        completion = gateway.complete(
            messages, model=route, options=opts, prompt_ref=prompt.prompt_ref(), metadata=call_meta
        )
        try:
            data = parse_output(prompt, completion.text, output_type)
            span.attributes["attempts"] = 1
            return StructuredOutput(data, completion, 1)
        except OutputParseError as first:
            if not repair:
                raise
            problem = _detail(first)
        span.attributes["repair"] = problem
        retry = [
            *messages,
            Message.assistant(completion.text),
            Message.user(REPAIR_INSTRUCTION.format(error=problem)),
        ]
        repaired = gateway.complete(
            retry,
            model=route,
            options=opts,
            prompt_ref=prompt.prompt_ref(),
            metadata={**call_meta, "repair": 1},
        )
        span.attributes["attempts"] = 2
        try:
            data = parse_output(prompt, repaired.text, output_type)
        except OutputParseError as second:
            raise OutputParseError(
                f"{prompt.ref}: the reply was still invalid after one repair attempt: {_detail(second)} "
                f"(first attempt: {problem})",
                raw=repaired.text,
            ) from second
        return StructuredOutput(data, repaired, 2)


def _detail(exc: OutputParseError) -> str:
    """The error's message without the raw reply appended to it."""
    return str(exc).split("\nraw reply:", 1)[0]
