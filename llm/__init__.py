"""The LLM gateway (OpenAI-compatible API over many providers). Built in a later issue."""
