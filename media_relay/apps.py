"""The media relay (SFU) application."""

from django.apps import AppConfig


class MediaRelayConfig(AppConfig):
    """Forwards published WebRTC media to players without transcoding."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "media_relay"
