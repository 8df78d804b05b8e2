"""The cost of a call from its usage and its model's prices (USD per million tokens).

Cached input tokens are priced separately: ``(prompt - cached) x input + cached x
cached_input + completion x output``, with ``cached_input`` falling back to ``input`` when
the model has no cached price (the provider then bills cache reads as ordinary input). The
result is a Decimal rounded to 8 places (half up).

A price that is needed and unknown makes the cost unknown (None), never 0: a model without a
price must not look free in the call log or slip under a spend budget. A price that is not
needed does not matter (an embeddings call has no completion tokens, so no output price is
needed).

Nothing here imports Django: the gateway's hot path uses it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

from llm.canonical import Prices, Usage

_PER_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("0.00000001")
# Token counts times prices never need more digits than this; a local context keeps the
# arithmetic independent of whatever the process's default decimal context is.
_CONTEXT = Context(prec=50, rounding=ROUND_HALF_UP)


def _tokens(value: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _price(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, Decimal):  # a float or str slipped into a snapshot
        value = Decimal(str(value))
    return value if value.is_finite() else None


def _total(parts: list[tuple[int, Decimal | None]]) -> Decimal | None:
    """Sum of tokens x price per million; None when a price is missing for tokens > 0."""
    total = Decimal(0)
    for tokens, price in parts:
        if tokens == 0:
            continue
        if price is None:
            return None
        total = _CONTEXT.add(total, _CONTEXT.multiply(Decimal(tokens), price))
    return _CONTEXT.divide(total, _PER_MILLION).quantize(_QUANTUM, context=_CONTEXT)


def cost(usage: Usage, prices: Prices) -> Decimal | None:
    """The call's cost in USD, or None when a price it needs is unknown. Negative counts
    (a provider's bug) count as 0; cached tokens are at most the prompt tokens."""
    prompt = _tokens(usage.prompt_tokens)
    cached = min(_tokens(usage.cached_tokens), prompt)
    completion = _tokens(usage.completion_tokens)
    input_price = _price(prices.input)
    cached_price = _price(prices.cached_input)
    return _total(
        [
            (prompt - cached, input_price),
            (cached, input_price if cached_price is None else cached_price),
            (completion, _price(prices.output)),
        ]
    )


def estimate_cost(prompt_tokens: int, max_completion_tokens: int, prices: Prices) -> Decimal | None:
    """The most a call may cost, for budget reservations: every prompt token at the input
    price (no cache hit assumed) and every allowed completion token at the output price.
    None when a needed price is unknown."""
    return _total(
        [
            (_tokens(prompt_tokens), _price(prices.input)),
            (_tokens(max_completion_tokens), _price(prices.output)),
        ]
    )
