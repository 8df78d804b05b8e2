"""The shape every changing service in portal/services/ keeps (docs/architecture.md): the
actor is a keyword-only, typed parameter, so a call cannot pass a user where a reason or a
role belongs, and every function taking one runs in a transaction."""

import importlib
import inspect
import pkgutil

import portal.services

MODULES = [importlib.import_module(f"portal.services.{m.name}") for m in pkgutil.iter_modules(portal.services.__path__)]
# Readers: they take whom to show things to, and change nothing.
READERS = {"managed_tenants", "managed_apis", "managed_api", "subscription_requests"}
# Checks the changing services call inside their transactions.
CHECKS = {
    "membership",
    "require_role",
    "require_application",
    "require_staff",
    "require_role_or_permission",
    "require_team_manager",
    "require_api_manager",
    "is_staff",
    "staff_may",
    "person",
    "require_person",
    "tenants_of",
    "record",
}


def changing_services():
    for module in MODULES:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_") or name in READERS | CHECKS:
                continue
            if "actor" in inspect.signature(function).parameters:
                yield module.__name__, name, function


def test_every_changing_service_takes_a_keyword_only_typed_actor():
    found = list(changing_services())
    assert len(found) >= 25  # the services really were found
    for module, name, function in found:
        actor = inspect.signature(function).parameters["actor"]
        assert actor.kind is inspect.Parameter.KEYWORD_ONLY, f"{module}.{name}"
        assert actor.annotation is not inspect.Parameter.empty, f"{module}.{name}"


def test_every_changing_service_runs_in_a_transaction():
    for module, name, function in changing_services():
        source = inspect.getsource(function)
        # @transaction.atomic, a `with transaction.atomic(...)` block, or a thin wrapper
        # around one (set_version_state dispatches, request_subscription retries).
        assert "transaction.atomic" in source or name in {"set_version_state", "request_subscription"}, (
            f"{module}.{name}"
        )
