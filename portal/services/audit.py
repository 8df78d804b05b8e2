from django.db import models

from portal.models import AuditEvent, Tenant


def record(actor, action: str, obj: models.Model, *, tenant: Tenant | None = None, **details) -> AuditEvent:
    """Write one audit event. Call inside the transaction that makes the change."""
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        object_type=obj._meta.label,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        tenant=tenant,
        details=details,
    )
