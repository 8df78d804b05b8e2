"""The catalog's search box and tag filters drop NUL characters, as the REST API does:
PostgreSQL refuses NUL in any string, so ``/?q=%00`` used to answer 500 there."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from tests.plugins import postgres_server
from tests.portal.catalog_builders import make_api
from tests.portal.test_catalog_search import names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(publisher, staff):
    make_api(publisher, staff, "weather", description="Forecasts by the hour", tags=("geo", "climate"))
    make_api(publisher, staff, "maps", description="Tiles and routing", tags=("geo",))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params,expected",
    [
        ({"q": "\x00"}, ["Maps", "Weather"]),
        ({"q": "wea\x00ther"}, ["Weather"]),
        ({"tag": "\x00"}, ["Maps", "Weather"]),
        ({"tag": ["geo\x00", "\x00climate"]}, ["Weather"]),
        ({"q": "\x00tiles", "tag": "g\x00eo"}, ["Maps"]),
    ],
)
def test_nul_characters_are_dropped_from_search_and_tags(client, catalog, params, expected):
    response = client.get(reverse("catalog"), params)
    assert response.status_code == 200
    assert names(response) == expected
    assert "\x00" not in response.content.decode() and "%00" not in response.content.decode()


@pytest.mark.django_db
def test_a_search_reads_at_most_twenty_tags(client, catalog):
    # Each tag is one more subquery: a URL with hundreds of them is not a search.
    response = client.get(reverse("catalog"), {"tag": ["geo", *(f"t{n}" for n in range(900))]})
    assert response.status_code == 200 and names(response) == []
    assert response.context["selected_tags"] == ["geo", *(f"t{n}" for n in range(19))]


# --- the same on PostgreSQL, when it is installed ------------------------------------------

PROBE = """
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment

call_command("migrate", verbosity=0)
setup_test_environment()
client = Client(raise_request_exception=False)
searches = ({"q": "\\x00"}, {"tag": "\\x00"}, {"q": "a\\x00b", "tag": "x\\x00"})
print(*(client.get("/", params).status_code for params in searches))
"""


@pytest.fixture(scope="module")
def postgres(request):
    """The session's PostgreSQL cluster (the colleague plugin's), or one of our own."""
    if reason := postgres_server.unavailable_reason():
        pytest.skip(reason)
    if request.config.pluginmanager.has_plugin("tests.plugins.postgres_server"):
        yield postgres_server.ensure_started()
        return
    server = postgres_server.start(settings=postgres_server.FAST_SETTINGS)
    yield server
    server.stop()


def test_nul_in_search_or_tags_is_not_a_500_on_postgresql(postgres):
    import psycopg

    dbname = f"nul_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{dbname}"')
    env = {**os.environ, "DATABASE_URL": postgres.url(dbname), "SECRET_KEY": "nul-probe-" + "x" * 50}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == ["200", "200", "200"], probe.stderr[-3000:]
