"""Analytics tests run on SQLite and, when it is installed, on a real PostgreSQL too.

A test that takes the ``backend`` fixture runs once per backend:

- ``sqlite``: the suite's own test database (alias ``default``);
- ``postgres``: a second database alias, ``postgres``, on the session's throwaway cluster
  (``tests/plugins/postgres_server.py``), migrated by pytest-django like ``default``. The
  code under test is given the alias (``using=backend.alias``); subprocesses (workers, the
  ingest command) get ``backend.database_url``, so for them PostgreSQL is simply *the*
  database, as in production.

Why an alias rather than a second pytest run with DATABASE_URL: one session, one migration
of each database, and the two backends side by side in one report. The main suite (and the
gateway's configuration) stays on SQLite. Without PostgreSQL the ``postgres`` cases are
skipped with the reason (``make test`` installs it when it runs as root).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dj_database_url
import pytest
from django.conf import settings
from django.db import connections

from tests.plugins import postgres_server

POSTGRES_ALIAS = "postgres"
HERE = Path(__file__).resolve().parent

# Started when this directory is collected, before pytest-django sets the databases up.
_server = postgres_server.ensure_started()
if _server is not None and POSTGRES_ALIAS not in settings.DATABASES:
    settings.DATABASES[POSTGRES_ALIAS] = dj_database_url.parse(_server.url("portico"), conn_max_age=0)
    # Django fills in each alias's defaults when it first reads DATABASES; same dict, so again.
    connections.configure_settings(settings.DATABASES)


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" or "postgres"
    alias: str

    @property
    def database_url(self) -> str:
        """The DATABASE_URL of this backend's test database, for a subprocess."""
        name = connections[self.alias].settings_dict["NAME"]
        if self.name == "sqlite":
            return f"sqlite:///{name}"
        assert _server is not None
        return _server.url(name)

    def __str__(self) -> str:
        return self.name


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(_server is None, reason=str(postgres_server.unavailable_reason())),
        ),
    ]
)
def backend(request) -> Backend:
    return Backend(request.param, "default" if request.param == "sqlite" else POSTGRES_ALIAS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The PostgreSQL case of a test reaches both databases (the fixtures' users and the
    like live in ``default``); its django_db marker is widened to say so."""
    if _server is None:
        return
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("backend") != "postgres" or HERE not in Path(item.path).parents:
            continue
        marker = item.get_closest_marker("django_db")
        kwargs = dict(marker.kwargs) if marker else {}
        kwargs["databases"] = ["default", POSTGRES_ALIAS]
        item.add_marker(pytest.mark.django_db(*(marker.args if marker else ()), **kwargs))
