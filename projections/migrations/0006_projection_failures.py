"""Where a projection is stuck (``projections/runner.py``): the event it fails to apply and
since when, beside its checkpoint, so that ``/readyz`` on every process and node can say so."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("projections", "0005_analytics")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Checkpoint",
            name="failing_position",
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name="Checkpoint",
            name="failing_since",
            field=fields.BigIntField(null=True),
        ),
    ]
