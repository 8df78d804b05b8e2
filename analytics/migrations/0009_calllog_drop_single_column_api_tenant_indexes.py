"""Drop ``CallLog``'s single-column indexes on ``api_id`` and ``tenant_id``. With a million
calls on PostgreSQL, the log explorer's, the call page's and the trend reports' queries get
the same plans without them (on ``time`` or the unique ``request_id``: ``python -m
bench.calllog_indexes``), and every ingested row paid for both (the ingest ran
1.1-1.6x faster without them, alternated in the same runs; bench/README.md).

Only the indexes go: ``DROP INDEX`` by Django's own names (the same on every database), in
place of the ``AlterField`` Django would run, which on SQLite copies the whole table twice."""

from django.db import migrations, models

INDEXES = {
    "api_id": "analytics_calllog_api_id_96fdd484",
    "tenant_id": "analytics_calllog_tenant_id_961b888c",
}


class Migration(migrations.Migration):
    dependencies = [("analytics", "0008_calllog_channel")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="calllog", name=column, field=models.BigIntegerField(blank=True, null=True)
                )
                for column in INDEXES
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "analytics_calllog" ("{column}")',
                )
                for column, name in INDEXES.items()
            ],
        )
    ]
