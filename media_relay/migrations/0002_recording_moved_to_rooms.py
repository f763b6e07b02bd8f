"""Recording moved to rooms (rooms 0003): forget it here without touching its table."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('media_relay', '0001_initial'),
        ('rooms', '0003_recording'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name='Recording')],
        ),
    ]
