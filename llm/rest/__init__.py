"""The LLM management API (registered under /api/v1/llm/ by portal.rest.urls)."""
