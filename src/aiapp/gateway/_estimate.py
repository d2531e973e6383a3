"""Token estimates made before a call: for budgets (reserve the most a call could cost), tpm limits
and the ``cost`` routing strategy.

The estimate is deliberately simple and a little generous: about four characters per token over
everything sent (contents, tool schemas), a few tokens of framing per message, and the full
``max_tokens`` (or a configured default) for the reply. Actual usage settles the account afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from aiapp.gateway._pricing import TokenPrice
from aiapp.types import CallOptions, Message

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
DEFAULT_OUTPUT_TOKENS = 1024


@dataclass(frozen=True)
class TokenEstimate:
    """Tokens a call may use: ``input`` (estimated) and ``output`` (its ``max_tokens``)."""

    input: int
    output: int

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input + self.output

    def cost(self, price: TokenPrice) -> float:
        """The most this call could cost at ``price``."""
        return price.cost(self.input, self.output)


def estimate_tokens(
    messages: Sequence[Message],
    options: CallOptions | None,
    *,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> TokenEstimate:
    """Estimate the tokens of a call before making it."""
    chars = 0
    for message in messages:
        chars += len(message.content) + len(message.name or "")
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    if options is not None and options.tools:
        chars += len(json.dumps([tool.to_openai() for tool in options.tools]))
    input_tokens = -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)
    output = options.max_tokens if options is not None and options.max_tokens else default_output_tokens
    return TokenEstimate(input=input_tokens, output=output)
