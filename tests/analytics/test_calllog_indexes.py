"""CallLog keeps the indexes its queries use and no other (migration 0009): each index is
paid on every ingested row. See bench/calllog_indexes.py for the plans and the ingest rates."""

import pytest
from django.db import connections

pytestmark = pytest.mark.django_db


def test_calllog_has_only_the_indexes_its_queries_use(backend):
    connection = connections[backend.alias]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "analytics_calllog")
    indexed = {
        tuple(c["columns"]) for c in constraints.values() if (c["index"] or c["unique"]) and not c["primary_key"]
    }
    assert ("time",) in indexed and ("tenant_id", "time") in indexed and ("request_id",) in indexed
    assert ("api_id",) not in indexed and ("tenant_id",) not in indexed
