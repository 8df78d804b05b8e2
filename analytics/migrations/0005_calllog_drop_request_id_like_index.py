"""On PostgreSQL, drop the ``varchar_pattern_ops`` index Django adds beside the unique index of
``CallLog.request_id``: it serves only LIKE 'prefix%' searches, which nothing makes on request
ids (they are looked up whole, through the unique index), and every ingested row paid for it.
Other databases have no such index; the model's state is unchanged."""

from django.db import migrations


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'analytics_calllog' "
            "AND indexname LIKE 'analytics_calllog_request_id%%_like'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


def create_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS analytics_calllog_request_id_like "
        "ON analytics_calllog (request_id varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_rollups_and_trend_reports")]

    operations = [migrations.RunPython(drop_like_index, create_like_index)]
