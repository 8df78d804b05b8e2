"""The ops tests drive the real gateway with REST and AI traffic: the gateway harness's
upstreams and ``configure``, and the LLM harness's mock provider, gateway (with the test
process's encryption keys) and ``ai_route``. See tests/gateway/conftest.py and
tests/llm/conftest.py."""

from tests.gateway.conftest import configure, upstream_a  # noqa: F401
from tests.llm.conftest import ai_route, call_record, gateway, llm_gateway, mock_llm  # noqa: F401
