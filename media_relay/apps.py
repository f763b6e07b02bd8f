"""The media relay (SFU) application."""

from django.apps import AppConfig


class MediaRelayConfig(AppConfig):
    """Forwards published WebRTC media to players without transcoding."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "media_relay"

    # Nothing at start-up: aiortc/aioice patches are applied by a media worker when it starts
    # (aiortc_compat.install); the room_finished -> mix hook is wired by rooms (RoomsConfig.ready).
