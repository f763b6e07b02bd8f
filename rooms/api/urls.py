"""Routes of the Room REST API (mounted at /api/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from rooms.api import views

router = SimpleRouter(trailing_slash="")
router.register("rooms", views.RoomViewSet, basename="room")

ROOM = "rooms/<str:room_name>"

urlpatterns = [
    *router.urls,
    path(f"{ROOM}/tokens", views.TokenView.as_view(), name="room-tokens"),
    path(f"{ROOM}/tokens/<str:jti>", views.TokenRevocationView.as_view(), name="room-token-revoke"),
    path(f"{ROOM}/participants", views.ParticipantViewSet.as_view({"get": "list"}), name="participant-list"),
    path(
        f"{ROOM}/participants/<path:login>/kick",  # path: a login may contain "/" (sent as %2F)
        views.ParticipantViewSet.as_view({"post": "kick"}),
        name="participant-kick",
    ),
    path(f"{ROOM}/streams", views.StreamViewSet.as_view({"get": "list"}), name="stream-list"),
    path(f"{ROOM}/streams/<str:stream_id>/mute", views.StreamViewSet.as_view({"post": "mute"}), name="stream-mute"),
    path(
        f"{ROOM}/streams/<str:stream_id>/unpublish",
        views.StreamViewSet.as_view({"post": "unpublish"}),
        name="stream-unpublish",
    ),
    path(f"{ROOM}/messages", views.MessageViewSet.as_view({"get": "list", "post": "create"}), name="message-list"),
    # Recordings (list, retrieve, download) are served by rooms/recordings/urls.py at /api/recordings.
]
