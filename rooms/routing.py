"""WebSocket routes of the Room API."""

from django.urls import path

from rooms.consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/", RoomConsumer.as_asgi()),
]
