"""Cost arithmetic: per-million prices, cached input, unknown prices, rounding, bad counts."""

from __future__ import annotations

from decimal import Decimal

from llm.canonical import Prices, Usage
from llm.pricing import cost, estimate_cost

GPT = Prices(input=Decimal("2.50"), output=Decimal("10.00"), cached_input=Decimal("1.25"))


def test_cost_is_tokens_times_price_per_million() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    assert cost(usage, GPT) == Decimal("0.0075")  # 1000 x 2.50 + 500 x 10.00, per million


def test_cached_tokens_are_priced_at_the_cached_price() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=400)
    # 600 x 2.50 + 400 x 1.25 + 500 x 10.00 = 1500 + 500 + 5000 per million
    assert cost(usage, GPT) == Decimal("0.007")


def test_cached_tokens_fall_back_to_the_input_price_without_a_cached_price() -> None:
    prices = Prices(input=Decimal("2.50"), output=Decimal("10.00"))
    usage = Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=400)
    assert cost(usage, prices) == Decimal("0.0025")


def test_an_unknown_needed_price_makes_the_cost_unknown_never_zero() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=5)
    assert cost(usage, Prices()) is None
    assert cost(usage, Prices(input=Decimal("1"))) is None
    assert cost(usage, Prices(output=Decimal("1"))) is None
    cached_only = Usage(prompt_tokens=10, cached_tokens=10)
    assert cost(cached_only, Prices(cached_input=None, output=Decimal("1"))) is None


def test_a_price_that_is_not_needed_may_be_unknown() -> None:
    embeddings = Usage(prompt_tokens=2000, completion_tokens=0)
    assert cost(embeddings, Prices(input=Decimal("0.02"))) == Decimal("0.00004")
    all_cached = Usage(prompt_tokens=100, cached_tokens=100)
    assert cost(all_cached, Prices(cached_input=Decimal("1"))) == Decimal("0.0001")


def test_no_tokens_cost_nothing_even_without_prices() -> None:
    assert cost(Usage(), Prices()) == 0


def test_cost_is_rounded_half_up_to_eight_places() -> None:
    prices = Prices(input=Decimal("0.005"), output=Decimal("0.015"))
    assert cost(Usage(prompt_tokens=1), prices) == Decimal("0.00000001")  # 0.000000005 rounds up
    assert cost(Usage(prompt_tokens=1, completion_tokens=1), prices) == Decimal("0.00000002")
    result = cost(Usage(prompt_tokens=123_456_789, completion_tokens=987_654), GPT)
    assert result == Decimal("318.51851250")
    assert result is not None and result.as_tuple().exponent == -8


def test_large_counts_stay_exact() -> None:
    usage = Usage(prompt_tokens=10**15, completion_tokens=10**15)
    assert cost(usage, GPT) == Decimal("12500000000")


def test_negative_counts_count_as_zero_and_cached_never_exceeds_prompt() -> None:
    assert cost(Usage(prompt_tokens=-5, completion_tokens=-1), Prices()) == 0
    usage = Usage(prompt_tokens=100, cached_tokens=500)
    assert cost(usage, GPT) == Decimal("0.000125")  # all 100 at the cached price


def test_float_prices_are_read_as_their_decimal_text() -> None:
    prices = Prices(input=0.1, output=0.3)  # type: ignore[arg-type]
    assert cost(Usage(prompt_tokens=10, completion_tokens=10), prices) == Decimal("0.000004")


def test_non_finite_prices_are_unknown() -> None:
    assert cost(Usage(prompt_tokens=1), Prices(input=Decimal("NaN"))) is None
    assert cost(Usage(prompt_tokens=1), Prices(input=Decimal("Infinity"))) is None


def test_estimate_cost_reserves_the_prompt_at_input_price_and_the_allowed_completion() -> None:
    assert estimate_cost(1000, 1024, GPT) == Decimal("0.01274")
    assert estimate_cost(1000, 0, Prices(input=Decimal("2.50"))) == Decimal("0.0025")
    assert estimate_cost(1000, 1024, Prices(input=Decimal("2.50"))) is None
    assert estimate_cost(-1, -1, Prices()) == 0
