from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shards", "0001_initial")]

    operations = [
        migrations.AlterModelOptions(
            name="shard",
            options={
                "ordering": ["key"],
                "permissions": [("manage_shard", "Can create a shard, rotate its token and retire it")],
            },
        ),
    ]
