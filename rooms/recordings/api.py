"""REST API of recordings: list, retrieve (with mix progress) and download, for API keys and staff."""

from __future__ import annotations

import mimetypes
from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.reverse import reverse
from rest_framework.viewsets import GenericViewSet

from rooms.api.authentication import APIKeyAuthentication
from rooms.api.permissions import IsRoomAPIClient as CanReadRecordings
from rooms.recording_models import Recording

# The Room API's access rule: an API key or a staff session.
AUTHENTICATION: list[Any] = [APIKeyAuthentication, SessionAuthentication]

CONTENT_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska", ".mp4": "video/mp4"}


class RecordingSerializer(serializers.ModelSerializer):
    """A recording as the API shows it (ids are public ids, never database keys)."""

    id = serializers.CharField(source="public_id", read_only=True)
    room = serializers.CharField(source="room.name", read_only=True)
    room_id = serializers.IntegerField(read_only=True)
    participant = serializers.CharField(source="participant_login", read_only=True)
    stream = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Recording
        fields = [
            "id", "kind", "room", "room_id", "participant", "stream", "status", "reason", "progress",
            "audio_codec", "video_codec", "start_offset", "duration", "size",
            "created_at", "started_at", "finished_at", "download_url",
        ]
        read_only_fields = fields

    def get_stream(self, recording: Recording) -> str | None:
        """The public id of the recorded stream (None for a mix)."""
        return recording.stream.public_id if recording.stream_id else None  # type: ignore[union-attr]

    def get_download_url(self, recording: Recording) -> str | None:
        """Where the file can be fetched once it exists."""
        if not recording.file_name:
            return None
        return reverse("recording-download", args=[recording.public_id], request=self.context.get("request"))


class RecordingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    """Recordings, newest first; filter with ?room=<name>, ?kind=stream|mixed, ?status=."""

    serializer_class = RecordingSerializer
    authentication_classes = AUTHENTICATION
    permission_classes = [CanReadRecordings]
    lookup_field = "public_id"
    lookup_url_kwarg = "recording_id"

    def get_queryset(self) -> QuerySet[Recording]:
        queryset = Recording.objects.select_related("room", "stream")
        params = self.request.query_params
        if params.get("room"):
            queryset = queryset.filter(room__name=params["room"])
        if params.get("kind"):
            queryset = queryset.filter(kind=params["kind"])
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("room", str, description="Only recordings of rooms with this name."),
            OpenApiParameter("kind", str, enum=["stream", "mixed"]),
            OpenApiParameter("status", str, enum=["recording", "done", "failed"]),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """Recordings, newest first."""
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: OpenApiResponse()})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, recording_id: str) -> FileResponse:
        """The recording's file (a per-stream WebM/Matroska file or the room's MP4 mix)."""
        recording = self.get_object()
        path = recording.path
        if path is None or not path.is_file():
            raise Http404("this recording has no file (yet)")
        content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        return FileResponse(
            path.open("rb"), as_attachment=True, filename=f"{recording.kind}-{recording.public_id}{path.suffix}",
            content_type=content_type or "application/octet-stream",
        )
