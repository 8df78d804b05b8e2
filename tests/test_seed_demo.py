import pytest
from django.core.management import call_command

from llm.models import Budget, Model, ModelRoute, Provider, ProviderKey, ProviderKind
from llm.snapshot import build_ai_config
from portal.models import Api, ApiKey, ApiVersion, Subscription, SubscriptionState, Tenant, VersionState
from portal.models.catalog import ApiKind

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
    assert Subscription.objects.filter(state=SubscriptionState.APPROVED).count() == 3  # weather, payments, LLM
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
