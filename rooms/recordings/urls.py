"""Routes of the recordings API (mounted under /api/)."""

from django.urls import path

from rooms.recordings.api import RecordingViewSet

urlpatterns = [
    path("recordings", RecordingViewSet.as_view({"get": "list"}), name="recording-list"),
    path("recordings/<str:recording_id>", RecordingViewSet.as_view({"get": "retrieve"}), name="recording-detail"),
    path(
        "recordings/<str:recording_id>/download",
        RecordingViewSet.as_view({"get": "download"}),
        name="recording-download",
    ),
]
