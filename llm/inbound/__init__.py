"""What the gateway's clients speak, to and from the canonical format: the OpenAI wire
format (``openai_chat``) and Anthropic's Messages API (``anthropic_messages``)."""

from llm.canonical import InboundFormat
from llm.inbound.anthropic_messages import ANTHROPIC, AnthropicFormat
from llm.inbound.openai_chat import OPENAI, OpenAIFormat
from llm.inbound.refusal import Refusal

FORMATS: dict[str, OpenAIFormat | AnthropicFormat] = {OPENAI.name: OPENAI, ANTHROPIC.name: ANTHROPIC}

# mypy checks here that both keep the canonical contract.
_CONTRACT: tuple[InboundFormat, ...] = (OPENAI, ANTHROPIC)

__all__ = ["ANTHROPIC", "FORMATS", "OPENAI", "AnthropicFormat", "OpenAIFormat", "Refusal"]
