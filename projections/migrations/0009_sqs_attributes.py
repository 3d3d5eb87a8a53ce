"""The rest of SQS's queue attributes as queue settings (API.md v1.2, "SQS-compatible endpoint:
the rest of SQS"): Policy, KmsMasterKeyId, KmsDataKeyReusePeriodSeconds, SqsManagedSseEnabled,
DeduplicationScope, FifoThroughputLimit, and RedrivePolicy as it was sent.

Columns that every row must have carry their default in the database too (``db_default``): a
store upgraded with queues in it fills them for the rows it has."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("projections", "0008_history_retention")]

    initial = False

    operations = [
        ops.AddField(
            model_name="QueueView",
            name="policy",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueView",
            name="kms_master_key_id",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueView",
            name="kms_data_key_reuse_period_s",
            field=fields.IntField(default=300, db_default=300),
        ),
        ops.AddField(
            model_name="QueueView",
            name="sqs_managed_sse",
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name="QueueView",
            name="deduplication_scope",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueView",
            name="fifo_throughput_limit",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueView",
            name="redrive_policy",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="policy",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="kms_master_key_id",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="kms_data_key_reuse_period_s",
            field=fields.IntField(default=300, db_default=300),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="sqs_managed_sse",
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="deduplication_scope",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="fifo_throughput_limit",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="redrive_policy",
            field=fields.TextField(null=True),
        ),
    ]
