"""The media relay (SFU) application."""

from django.apps import AppConfig


class MediaRelayConfig(AppConfig):
    """Forwards published WebRTC media to players without transcoding."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "media_relay"

    def ready(self) -> None:
        from django.conf import settings

        from media_relay.ports import install_port_range
        from media_relay.stats import install_codec_counters

        install_codec_counters()
        install_port_range(settings.MEDIA_UDP_PORTS)
