"""The audit trail: one AuditEvent per change, written in the transaction that makes it."""

from __future__ import annotations

from typing import Any

from django.db import models

from portal.models import AuditAction, AuditEvent, Tenant
from portal.services.access import Actor, person

__all__ = ["AuditAction", "record"]


def record(
    actor: Actor | None, action: AuditAction, obj: models.Model, *, tenant: Tenant | None = None, **details: Any
) -> AuditEvent:
    """Write one audit event. Call inside the transaction that makes the change.

    ``action`` must be an AuditAction: a free string (``f"version.{target}"``) is refused
    here, at once, rather than stored as an action no filter or report knows."""
    action = AuditAction(action)  # ValueError for a string that is not a member
    return AuditEvent.objects.create(
        actor=person(actor),
        action=action,
        object_type=obj._meta.label,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        tenant=tenant,
        details=details,
    )
