from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("projections", "0001_initial")]

    initial = False

    operations = [
        ops.AddField(
            model_name="MessageView",
            name="group_id",
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.AddField(
            model_name="MessageView",
            name="priority",
            field=fields.IntField(default=4),
        ),
    ]
