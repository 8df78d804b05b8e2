"""Save-time checks of a prompt version: the data plane's own rules (``llm.prompts``).

What the gateway would refuse to run (``PromptSpec.checked`` marks it broken) must be
refused when the author saves it, so the authoring services use the very same functions:
``check_schema`` (draft 2020-12 meta-validation, local ``$ref`` only, no base-moving
keywords, size, depth and expansion caps, an object at the top of an input schema),
``template_errors`` (malformed placeholders, unknown or reserved names) and
``template_variables``.
"""

from llm.prompts import RESERVED_KEYS, check_schema, template_errors, template_variables

__all__ = ["RESERVED_KEYS", "check_schema", "template_errors", "template_variables"]
