"""Recording becomes a rooms model; its table (media_relay_recording) and rows stay as they are.

State only: media_relay 0002 removes the model from media_relay's state.
"""

import django.db.models.deletion
import rooms.recording_models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('media_relay', '0001_initial'),
        ('rooms', '0002_api_and_webhooks'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Recording',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('public_id', models.CharField(default=rooms.recording_models.new_recording_id, editable=False, max_length=32, unique=True)),
                        ('kind', models.CharField(choices=[('stream', 'per-stream'), ('mixed', 'room mix')], db_index=True, default='stream', max_length=16)),
                        ('participant_login', models.CharField(blank=True, help_text='Shown on the tile of the mix.', max_length=64)),
                        ('file_name', models.CharField(blank=True, help_text='Relative to RECORDINGS_DIR; never user text.', max_length=200)),
                        ('audio_codec', models.CharField(blank=True, max_length=32)),
                        ('video_codec', models.CharField(blank=True, max_length=32)),
                        ('start_offset', models.FloatField(default=0.0, help_text="Seconds from the room's start to the first media.")),
                        ('duration', models.FloatField(blank=True, help_text='Seconds of media in the file.', null=True)),
                        ('size', models.BigIntegerField(blank=True, help_text='File size in bytes.', null=True)),
                        ('status', models.CharField(choices=[('recording', 'Recording'), ('done', 'Done'), ('failed', 'Failed')], db_index=True, default='recording', max_length=16)),
                        ('reason', models.TextField(blank=True, help_text='Why the recording failed.')),
                        ('progress', models.FloatField(default=0.0, help_text='Percent done (mixing).')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('participant', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='recordings', to='rooms.participant')),
                        ('room', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='recordings', to='rooms.room')),
                        ('stream', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='recordings', to='rooms.stream')),
                    ],
                    options={
                        'db_table': 'media_relay_recording',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
            ],
        ),
    ]
