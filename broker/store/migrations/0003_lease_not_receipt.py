"""Events and the write-side state name a lease by a digest of its receipt, never the receipt
itself (API.md "Clarifications of v1"): the column that held receipts holds leases."""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("broker", "0002_immutable_events")]

    initial = False

    operations = [
        ops.RenameField(model_name="MessageRow", old_name="receipt", new_name="lease"),
    ]
