"""The Room API application."""

from django.apps import AppConfig


class RoomsConfig(AppConfig):
    """Rooms, participants, streams, messages and recordings."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "rooms"

    def ready(self) -> None:
        """Connect the signal receivers and plug rooms into the media relay's port."""
        from media_relay.port import set_media_events
        from rooms import webhooks
        from rooms.media_events import RoomMediaEvents
        from rooms.recordings.mixing import on_room_finished
        from rooms.signals import room_finished

        webhooks.connect_receivers()
        room_finished.connect(on_room_finished, dispatch_uid="rooms.recordings.mix")
        set_media_events(RoomMediaEvents())
