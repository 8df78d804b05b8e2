"""The LLM gateway: one OpenAI- and Anthropic-compatible API over many providers.

Data-plane modules (canonical, providers, inbound, sse, pii, tokens, pricing, budgets,
router, llmcache, mock_provider) import nothing from Django; the Django app side is
models, admin, services, rest, snapshot, tasks, crypto.
"""
