import pytest
from django.core.management import call_command

from llm.models import Budget, Model, ModelRoute, Provider, ProviderKey, ProviderKind
from llm.snapshot import build_ai_config
from portal.models import Api, ApiKey, ApiVersion, Subscription, SubscriptionState, Tenant, VersionState
from portal.models.catalog import ApiKind
from tests.llm.conftest import start_mock, stop_process

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_ALIASES = {
    "gpt-4o-mini",
    "claude-haiku",
    "gemini-flash",
    "mistral-small",
    "azure-gpt",
    "local-llama",
    "text-embedding-3-small",
    "chat-ab",
}


def test_seed_demo_covers_every_lifecycle_state_and_prints_the_key_once(capsys):
    call_command("seed_demo")
    first = capsys.readouterr().out
    states = set(ApiVersion.objects.values_list("state", flat=True))
    assert states == {s.value for s in VersionState}
    # weather, payments, LLM, sentiment (a prompt API)
    assert Subscription.objects.filter(state=SubscriptionState.APPROVED).count() == 4
    key = ApiKey.objects.get()
    assert f"{key.prefix}." in first and "shown once" in first
    assert "/v1/chat/completions" in first


def test_seed_demo_publishes_an_ai_api_with_every_provider_kind_on_the_mock_provider():
    call_command("seed_demo")
    llm_api = Api.objects.get(slug="portico-llm")
    assert llm_api.kind == ApiKind.AI
    version = llm_api.versions.get()
    assert (version.state, version.base_path) == (VersionState.PUBLISHED, None)
    assert Subscription.objects.get(api=llm_api).state == SubscriptionState.APPROVED
    assert set(Provider.objects.values_list("kind", flat=True)) == set(ProviderKind.values)
    assert all(p.base_url.startswith("http://127.0.0.1:9100/") for p in Provider.objects.all())
    assert Model.objects.filter(input_price__isnull=True, output_price__isnull=True).exists()  # "unknown" shown
    assert set(ModelRoute.objects.values_list("alias", flat=True)) == DEMO_ALIASES
    assert Budget.objects.filter(tenant__slug="acme", spend_limit_usd__isnull=False).exists()

    config = build_ai_config()
    assert set(config.routes) == DEMO_ALIASES
    primary = config.routes["gpt-4o-mini"]
    assert [t.provider_kind for _w, t in primary.targets] == ["openai"]
    assert [t.provider_kind for t in primary.fallbacks] == ["anthropic"]
    assert sorted(w for w, _t in config.routes["chat-ab"].targets) == [30, 70]
    assert config.routes["azure-gpt"].targets[0][1].azure_api_version
    assert "embeddings" in config.routes["text-embedding-3-small"].targets[0][1].capabilities
    assert all(t.keys for route in config.routes.values() for _w, t in route.targets)


def test_seed_demo_twice_duplicates_nothing_and_does_not_reprint_the_secret(capsys):
    call_command("seed_demo")
    capsys.readouterr()

    def counts():
        return (
            Tenant.objects.count(),
            Api.objects.count(),
            ApiVersion.objects.count(),
            Subscription.objects.count(),
            Provider.objects.count(),
            ProviderKey.objects.count(),
            Model.objects.count(),
            ModelRoute.objects.count(),
            Budget.objects.count(),
        )

    before = counts()
    call_command("seed_demo")
    again = capsys.readouterr().out
    assert counts() == before
    assert ApiKey.objects.count() == 1
    key = ApiKey.objects.get()
    assert f"{key.prefix}…" in again and f"{key.prefix}." not in again


PROMPT_SLUGS = {"sentiment", "translate", "summarize", "extract-entities"}


@pytest.fixture
def mock_llm():
    """The real mock provider process (python -m llm.mock_provider)."""
    mock = start_mock()
    yield mock
    mock.http.close()
    stop_process(mock.process)


def test_seed_demo_publishes_four_prompt_apis_whose_examples_run_on_the_mock_provider(monkeypatch, mock_llm):
    from openapi_spec_validator import validate

    from llm.models import OutputMode, PromptVersion
    from llm.prompt_openapi import example_of
    from llm.prompt_playground import run_draft
    from portal.management.commands import seed_demo

    # The demo's providers point at this test's mock provider process (the demo's is on 9100).
    monkeypatch.setattr(seed_demo, "DEMO_LLM", mock_llm.url)
    call_command("seed_demo")
    prompts = {p.version.api.slug: p for p in PromptVersion.objects.select_related("version__api", "route")}
    assert set(prompts) == PROMPT_SLUGS
    assert {p.output_mode for p in prompts.values()} == {OutputMode.TEXT, OutputMode.JSON}
    assert prompts["sentiment"].output_schema["properties"]["sentiment"]["enum"] == ["positive", "neutral", "negative"]
    assert prompts["summarize"].input_schema["properties"]["text"]["maxLength"] == 20000
    assert prompts["summarize"].max_tokens == 300
    assert prompts["extract-entities"].output_schema["properties"]["entities"]["type"] == "array"
    for slug, prompt in prompts.items():
        version = prompt.version
        assert version.state == VersionState.PUBLISHED and version.api.kind == ApiKind.PROMPT, slug
        assert set(version.api.plans.values_list("name", flat=True)) == {"Free", "Pro"}
        validate(version.openapi)
        example = version.openapi["paths"][version.base_path]["post"]["requestBody"]["content"]["application/json"]
        assert example["example"] == example_of(prompt.input_schema)
        result = run_draft(prompt, example["example"])  # the published example is valid input
        assert result.ok, (slug, result.error_code, result.error_message, result.field_errors)
        if prompt.output_mode == OutputMode.JSON:
            assert isinstance(result.output, dict), slug
    sentiment = Api.objects.get(slug="sentiment")
    assert Subscription.objects.get(api=sentiment).state == SubscriptionState.APPROVED

    before = (PromptVersion.objects.count(), Api.objects.count(), Subscription.objects.count())
    call_command("seed_demo")
    assert (PromptVersion.objects.count(), Api.objects.count(), Subscription.objects.count()) == before
