"""Two owners demoting each other at the same moment leave the team with an owner.

``tenants.change_role`` used to check "is there another owner?" and then write, without a
lock: both checks could pass before either write, and the team was left with no owner.
It now locks the team's row and memberships before deciding. Row locks only mean something
on a database that has them, so the race runs on a real PostgreSQL (the session's cluster,
tests/plugins/postgres_server.py) in a subprocess for which it is *the* database.

To make the race happen every time rather than by luck, a third transaction holds the
team's membership rows (SELECT ... FOR UPDATE) while both demotions start, and lets go only
once PostgreSQL shows both waiting for a lock. Without the service's own locks both
demotions have passed their check by then (reads do not wait) and both writes go through.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.plugins import postgres_server

ROOT = Path(__file__).resolve().parents[2]

RACE = """
import json, threading, time
import django
django.setup()
from django.core.management import call_command
from django.db import connection, transaction
from django.contrib.auth import get_user_model

call_command("migrate", verbosity=0)

from portal.models import Membership, Role, Tenant
from portal.services import tenants
from portal.services.errors import ServiceError

User = get_user_model()
ann = User.objects.create_user("ann", "ann@example.com", "x")
ben = User.objects.create_user("ben", "ben@example.com", "x")
team = Tenant.objects.create(name="Duo", slug="duo")
ann_m = Membership.objects.create(user=ann, tenant=team, role=Role.OWNER)
ben_m = Membership.objects.create(user=ben, tenant=team, role=Role.OWNER)

held, release = threading.Event(), threading.Event()
outcomes = {}

def hold():
    with transaction.atomic():
        list(Membership.objects.select_for_update().filter(tenant=team))
        held.set()
        release.wait(20)
    connection.close()

def demote(name, target, actor):
    try:
        tenants.change_role(target, Role.ADMIN, actor=actor)
        outcomes[name] = "done"
    except ServiceError as error:
        outcomes[name] = type(error).__name__
    finally:
        connection.close()

holder = threading.Thread(target=hold)
holder.start()
held.wait(10)
racers = [
    threading.Thread(target=demote, args=("ann demotes ben", ben_m, ann)),
    threading.Thread(target=demote, args=("ben demotes ann", ann_m, ben)),
]
for racer in racers:
    racer.start()
waiting, deadline = 0, time.monotonic() + 10
while waiting < 2 and time.monotonic() < deadline:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        waiting = cursor.fetchone()[0]
    time.sleep(0.02)
release.set()
holder.join()
for racer in racers:
    racer.join(20)
owners = sorted(Membership.objects.filter(tenant=team, role=Role.OWNER).values_list("user__username", flat=True))
print(json.dumps({"waiting": waiting, "outcomes": outcomes, "owners": owners}))
"""


@pytest.fixture(scope="module")
def postgres(request):
    """The session's PostgreSQL cluster, or a skip saying why there is none."""
    if reason := postgres_server.unavailable_reason():
        pytest.skip(reason)
    return postgres_server.ensure_started()


def test_two_owners_demoting_each_other_at_once_leave_an_owner(postgres):
    import psycopg

    dbname = f"race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{dbname}"')
    env = {**os.environ, "DATABASE_URL": postgres.url(dbname), "SECRET_KEY": "race-probe-" + "x" * 50}
    race = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert race.returncode == 0, race.stderr[-3000:]
    result = json.loads(race.stdout.strip().splitlines()[-1])
    assert result["waiting"] == 2, result  # both demotions really were in flight together
    assert len(result["owners"]) == 1, result
    # One demotion won; the other was refused (its actor is no owner any more), not lost.
    assert sorted(result["outcomes"].values()) == ["PermissionDenied", "done"], result
