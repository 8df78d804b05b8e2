from tests.llm.conftest import mock_llm  # noqa: F401 - the real mock provider process, for the playground
