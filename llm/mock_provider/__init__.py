"""A mock LLM provider for tests, the demo and the benchmark: real HTTP on loopback, in its
own process (``python -m llm.mock_provider --port 9100 [--workers N] [--no-check]``),
speaking the OpenAI, Azure OpenAI, Mistral, OpenAI-compatible, Anthropic Messages and
Gemini wire formats, streaming included, under one prefix per provider (see
``llm.mock_provider.app`` for the URL layout).

- Answers are deterministic: ``Mock <kind> answer to: <the last user text, cut to 60
  characters>``, token counts by the rule in ``llm.mock_provider.answers``; ``max_tokens``
  and stop sequences cut them (``length`` / ``max_tokens`` / ``MAX_TOKENS``). With tools
  declared and "call tool" in the last user message (or a tool choice that forces one),
  the answer is a call to the first (or the forced) tool; JSON mode answers a JSON object
  (matching the schema when one is given). Embeddings are 8 floats (or ``dimensions``)
  from a hash.
- Every request is checked against its provider's documented format (``--no-check`` turns
  this off); a violation is answered with the provider's own 400 (Mistral: 422) naming the
  problem. A key containing ``invalid`` is refused as the provider refuses a bad key.
- Test control (never used by the gateway): ``GET /_mock/requests?kind=&model=&limit=``
  (the last 1000 requests: path, headers with secrets cut to their last 4 characters,
  parsed body, conformance verdict, status, fault), ``POST /_mock/faults`` (``{"match":
  {"kind", "model", "key_last4", "stream", "endpoint"}, "fault": ..., "times": N, ...}``,
  faults listed in ``llm.mock_provider.control.FAULTS``), ``GET /_mock/faults``,
  ``POST /_mock/reset``, ``GET /_mock/health``.

Nothing here imports Django.
"""

from llm.mock_provider.app import MockProvider

__all__ = ["MockProvider"]
