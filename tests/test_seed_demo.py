import pytest
from django.core.management import call_command

from portal.models import Api, ApiKey, ApiVersion, Subscription, SubscriptionState, Tenant, VersionState

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_covers_every_lifecycle_state_and_prints_the_key_once(capsys):
    call_command("seed_demo")
    first = capsys.readouterr().out
    states = set(ApiVersion.objects.values_list("state", flat=True))
    assert states == {s.value for s in VersionState}
    assert Subscription.objects.filter(state=SubscriptionState.APPROVED).count() == 2
    key = ApiKey.objects.get()
    assert f"{key.prefix}." in first and "shown once" in first


def test_seed_demo_twice_duplicates_nothing_and_does_not_reprint_the_secret(capsys):
    call_command("seed_demo")
    capsys.readouterr()
    counts = (Tenant.objects.count(), Api.objects.count(), ApiVersion.objects.count(), Subscription.objects.count())
    call_command("seed_demo")
    again = capsys.readouterr().out
    assert counts == (
        Tenant.objects.count(),
        Api.objects.count(),
        ApiVersion.objects.count(),
        Subscription.objects.count(),
    )
    assert ApiKey.objects.count() == 1
    key = ApiKey.objects.get()
    assert f"{key.prefix}…" in again and f"{key.prefix}." not in again
