"""Django admin of recordings: files with download links, mix progress, and re-running a failed mix."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from rooms.recording_models import Recording
from rooms.recordings.mixing import enqueue_mix


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    """Recordings, newest first; a mix can be (re-)run from the actions menu."""

    list_display = (
        "short_id", "kind", "room", "participant_login", "status", "progress_display", "start_offset",
        "duration", "size", "created_at", "download",
    )
    list_filter = ("kind", "status")
    search_fields = ("public_id", "room__name", "participant_login")
    list_select_related = ("room",)
    actions = ("rerun_mix",)
    readonly_fields = (
        "public_id", "kind", "room", "participant", "stream", "participant_login", "file_name", "audio_codec",
        "video_codec", "start_offset", "duration", "size", "status", "reason", "progress", "created_at",
        "started_at", "finished_at", "download",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="id")
    def short_id(self, recording: Recording) -> str:
        """The first characters of the public id."""
        return recording.public_id[:8]

    @admin.display(description="progress")
    def progress_display(self, recording: Recording) -> str:
        """Percent done (mixes) and the failure reason if any."""
        if recording.status == Recording.Status.FAILED:
            return f"failed: {recording.reason[:80]}"
        return f"{recording.progress:.0f}%"

    @admin.display(description="file")
    def download(self, recording: Recording) -> SafeString | str:
        """A link to the file, when it exists."""
        if not recording.file_exists:
            return "-"
        url = reverse("recording-download", args=[recording.public_id])
        return format_html('<a href="{}">download</a>', url)

    @admin.action(description="Re-run the room mix of the selected recordings' rooms")
    def rerun_mix(self, request: HttpRequest, queryset: QuerySet[Recording]) -> None:
        """Queue the mix again (a failed mix keeps its row and gets a new attempt)."""
        queued = 0
        for room_id in sorted(set(queryset.values_list("room_id", flat=True))):
            mixed = Recording.objects.filter(room_id=room_id, kind=Recording.Kind.MIXED).first()
            if mixed is not None:
                Recording.objects.filter(pk=mixed.pk).update(status=Recording.Status.RECORDING, progress=0, reason="")
            enqueue_mix(room_id, mixed.pk if mixed else None)
            queued += 1
        self.message_user(request, f"{queued} mix job(s) queued; progress shows in the list.", messages.SUCCESS)
