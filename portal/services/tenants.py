"""Tenants and their members."""

from django.db import transaction
from django.utils.text import slugify

from portal.models import Membership, Role, Tenant
from portal.services import audit


def unique_tenant_slug(name: str) -> str:
    base = slugify(name)[:50] or "team"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_tenant(name: str, owner, *, is_personal: bool = False) -> Tenant:
    with transaction.atomic():
        tenant = Tenant.objects.create(name=name, slug=unique_tenant_slug(name), is_personal=is_personal)
        Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
        audit.record(owner, "tenant.created", tenant, tenant=tenant)
    return tenant
