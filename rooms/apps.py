"""The Room API application."""

from django.apps import AppConfig


class RoomsConfig(AppConfig):
    """Rooms, participants, streams and messages."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "rooms"

    def ready(self) -> None:
        """Connect the webhook receivers to the domain signals."""
        from rooms import webhooks

        webhooks.connect_receivers()
