"""The media relay (SFU) application."""

from django.apps import AppConfig


class MediaRelayConfig(AppConfig):
    """Forwards published WebRTC media to players without transcoding."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "media_relay"

    def ready(self) -> None:
        from media_relay.recording.mixer import on_room_finished
        from rooms.signals import room_finished

        room_finished.connect(on_room_finished, dispatch_uid="media_relay.recording.mix")
        # aiortc/aioice patches are applied by a media worker when it starts (aiortc_compat.install),
        # not here: management commands and client-side peers never need them.
