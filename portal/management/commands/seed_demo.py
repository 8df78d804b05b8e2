"""Seed a demo: an admin, two tenants, APIs in every lifecycle state, plans, an application
with an approved subscription and a key. Safe to run again: nothing is duplicated."""

import os
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from portal.models import (
    Api,
    ApiKey,
    ApiVersion,
    Application,
    Membership,
    Plan,
    Role,
    SubscriptionState,
    Tag,
    Tenant,
    UpstreamTarget,
    VersionState,
)
from portal.services import keys, lifecycle, subscriptions

DEMO_UPSTREAM = os.environ.get("PORTICO_DEMO_UPSTREAM", "http://127.0.0.1:9001")
ADMIN = ("admin", "admin@portico.local", "portico-admin")
DEVELOPER = ("dev", "dev@acme.example", "portico-dev")


def openapi(title: str, version: str, paths: dict) -> dict:
    return {"openapi": "3.0.3", "info": {"title": title, "version": version}, "paths": paths}


def get_op(summary: str, **params) -> dict:
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                for name, kind in params.items()
            ],
            "responses": {"200": {"description": "OK"}},
        }
    }


CATALOG = [
    # slug, name, description, tags, [(version, base_path, final state, paths)], [plans]
    (
        "weather",
        "Weather",
        "Forecasts and current conditions for any city.",
        ["weather", "geo"],
        [
            ("v1", "/weather/v1", VersionState.DEPRECATED, {"/forecast": get_op("Forecast", city="string")}),
            (
                "v2",
                "/weather/v2",
                VersionState.PUBLISHED,
                {"/forecast": get_op("Forecast", city="string", days="integer"), "/now": get_op("Now", city="string")},
            ),
        ],
        [("Free", False, {"requests_per_minute": 60, "daily_quota": 1000}), ("Pro", True, {"requests_per_second": 50})],
    ),
    (
        "payments",
        "Payments",
        "Charge cards and issue refunds.",
        ["finance"],
        [("v1", "/payments/v1", VersionState.PUBLISHED, {"/charges": get_op("List charges", limit="integer")})],
        [("Standard", True, {"requests_per_second": 10, "monthly_quota": 100000})],
    ),
    (
        "inventory",
        "Legacy Inventory",
        "Stock levels from the old warehouse system.",
        ["logistics"],
        [("v1", "/inventory/v1", VersionState.RETIRED, {"/items": get_op("Items")})],
        [("Free", False, {"requests_per_minute": 30})],
    ),
    (
        "maps",
        "Maps",
        "Geocoding and routing (coming soon).",
        ["geo"],
        [("v1-beta", "/maps/v1", VersionState.DRAFT, {"/geocode": get_op("Geocode", q="string")})],
        [("Free", False, {"requests_per_minute": 60})],
    ),
]


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--new-key", action="store_true", help="Issue a fresh demo key and print it.")

    @transaction.atomic
    def handle(self, *args, **options):
        admin = self._user(*ADMIN, staff=True)
        dev = self._user(*DEVELOPER, staff=False)
        acme = self._tenant("Acme Corp", "acme", dev, Role.OWNER)
        self._tenant("Globex", "globex", admin, Role.OWNER)
        publisher = Tenant.objects.get(slug="globex")

        for slug, name, description, tags, versions, plans in CATALOG:
            api, _ = Api.objects.get_or_create(
                slug=slug, defaults={"name": name, "description": description, "owner": publisher}
            )
            api.tags.set([Tag.objects.get_or_create(name=t)[0] for t in tags])
            for plan_name, approval, limits in plans:
                Plan.objects.get_or_create(api=api, name=plan_name, defaults={"requires_approval": approval, **limits})
            for version_name, base_path, state, paths in versions:
                self._version(api, version_name, base_path, state, paths, admin)

        app, _ = Application.objects.get_or_create(
            tenant=acme, name="Acme Dashboard", defaults={"description": "Demo client", "created_by": dev}
        )
        weather = Api.objects.get(slug="weather")
        subscriptions.request_subscription(app, weather, weather.plans.get(name="Free"), dev)
        payments = Api.objects.get(slug="payments")
        sub, _ = subscriptions.request_subscription(app, payments, payments.plans.get(name="Standard"), dev)
        if sub.state == SubscriptionState.PENDING:
            subscriptions.approve_subscription(sub, admin, reason="Demo: approved by the seed.")

        self.stdout.write(self.style.SUCCESS("Demo data is ready."))
        self.stdout.write(f"  admin:     {ADMIN[0]} / {ADMIN[2]}   (Django admin at /admin/)")
        self.stdout.write(f"  developer: {DEVELOPER[0]} / {DEVELOPER[2]}   (tenant Acme Corp)")
        existing = ApiKey.objects.filter(application=app, revoked_at__isnull=True).first()
        if existing and not options["new_key"]:
            self.stdout.write(
                f"  demo key:  {existing.prefix}… (its secret was shown when it was created; "
                "run `manage.py seed_demo --new-key` for a fresh one)"
            )
        else:
            key, secret = keys.create_api_key(app, dev, name="demo")
            self.stdout.write(f"  demo key:  {secret}   (shown once; only its hash is stored)")
            self.stdout.write(
                f"  try:       curl -H 'Authorization: Bearer {secret}' http://127.0.0.1:8080/weather/v2/forecast"
            )

    def _user(self, username, email, password, *, staff):
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": email, "is_staff": staff, "is_superuser": staff}
        )
        if created:
            user.set_password(password)
            user.save()
        return user

    def _tenant(self, name, slug, owner, role):
        tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
        Membership.objects.get_or_create(user=owner, tenant=tenant, defaults={"role": role})
        return tenant

    def _version(self, api, name, base_path, final_state, paths, admin):
        version, created = ApiVersion.objects.get_or_create(
            api=api,
            version=name,
            defaults={"base_path": base_path, "openapi": openapi(api.name, name, paths)},
        )
        if created:
            UpstreamTarget.objects.create(version=version, url=DEMO_UPSTREAM)
        if version.state != VersionState.DRAFT or final_state == VersionState.DRAFT:
            return
        lifecycle.publish_version(version, admin)
        if final_state == VersionState.DEPRECATED:
            lifecycle.deprecate_version(version, admin, sunset_at=timezone.now() + timedelta(days=90))
        elif final_state == VersionState.RETIRED:
            lifecycle.retire_version(version, admin, reason="Replaced by the new warehouse API.")
