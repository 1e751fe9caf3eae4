from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("bosses", "0004_authority_restore")]

    operations = [
        migrations.AlterModelOptions(
            name="bossencounter",
            options={
                "ordering": ["name"],
                "permissions": [("operate_boss", "Can operate a fight: go live, pause, resume, end, reset")],
            },
        ),
    ]
