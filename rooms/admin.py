"""Django admin for room oversight: live status, moderation that reaches live connections, API keys, webhooks."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from media_relay.metrics_publisher import placement_figures
from rooms import (
    moderation,
    token_admin,  # noqa: F401  (registers RevokedTokenAdmin)
    webhooks,
)
from rooms.api.views import with_counts
from rooms.exceptions import RoomError
from rooms.models import (
    WEBHOOK_EVENTS,
    APIKey,
    Message,
    Participant,
    Room,
    Stream,
    UserRole,
    WebhookDelivery,
    WebhookEndpoint,
)
from rooms.recordings import admin as recordings_admin  # noqa: F401  (registers RecordingAdmin)

logger = logging.getLogger(__name__)

RECENT_MESSAGES = 20
LIVE = (Stream.Status.PENDING, Stream.Status.PUBLISHING)


def _moderate(request: HttpRequest, room: Room, action: str, done: str, **fields: Any) -> bool:
    """Apply a moderation action now (live clients are told) and report the result to the admin user."""
    try:
        moderation.run(room.pk, action, by=f"an administrator ({request.user})", **fields)
    except RoomError as exc:
        messages.error(request, f"{room.name}: {exc.message}")
        return False
    messages.success(request, done)
    return True


class ActiveFilter(admin.SimpleListFilter):
    """Active or finished rooms."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("finished", "Finished")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        field = {Room: "finalized_at", Stream: "participant__room__finalized_at"}.get(
            queryset.model, "room__finalized_at"
        )
        if self.value() == "active":
            return queryset.filter(**{f"{field}__isnull": True})
        if self.value() == "finished":
            return queryset.filter(**{f"{field}__isnull": False})
        return queryset


class ParticipantInline(admin.TabularInline):
    """Everyone who was in the room (change links lead to the participant)."""

    model = Participant
    extra = 0
    fields = ("login", "state", "role", "joined_at", "left_at")
    readonly_fields = ("login", "state", "joined_at", "left_at")
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or obj.is_active


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms with live status; finalize, kick, mute and unpublish act on live connections at once."""

    list_display = (
        "name",
        "is_active_display",
        "participants_now",
        "streams_now",
        "max_participants",
        "record",
        "locked",
        "created_at",
        "finalized_at",
    )
    list_filter = (ActiveFilter, "record", "locked", "created_at")
    search_fields = ("name", "participants__login")
    date_hierarchy = "created_at"
    inlines = [ParticipantInline]
    actions = ["finalize_rooms"]
    fields = (
        "name",
        "max_participants",
        "record",
        "locked",
        "created_at",
        "finalized_at",
        "live_panel",
        "streams_panel",
        "media_panel",
        "messages_panel",
    )
    readonly_fields = (
        "name", "created_at", "finalized_at", "live_panel", "streams_panel", "media_panel", "messages_panel"
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return with_counts(super().get_queryset(request)).distinct()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rooms are created by a join or by POST /api/rooms

    def has_change_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        if obj is not None and not obj.is_active:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        """Settings changed in the form reach the room's clients as room_updated."""
        changed = {name for name in form.changed_data if name in ("max_participants", "locked")}
        super().save_model(request, obj, form, change)

        def tell_clients() -> None:
            # After the admin's transaction: the moderation coroutines use their own DB calls.
            if "locked" in changed:
                _moderate(request, obj, "lock" if obj.locked else "unlock", "Room clients were told.")
            if "max_participants" in changed:
                _moderate(
                    request,
                    obj,
                    "set_max_participants",
                    "Room clients were told.",
                    max_participants=obj.max_participants,
                )

        if changed and obj.is_active:
            transaction.on_commit(tell_clients)

    @admin.display(boolean=True, description="active", ordering="finalized_at")
    def is_active_display(self, room: Room) -> bool:
        return room.is_active

    @admin.display(description="participants now", ordering="participants_now")
    def participants_now(self, room: Room) -> int:
        return getattr(room, "participants_now", 0)

    @admin.display(description="streams now", ordering="streams_now")
    def streams_now(self, room: Room) -> int:
        return getattr(room, "streams_now", 0)

    def _button(self, room: Room, name: str, label: str, *args: Any) -> SafeString:
        url = reverse(f"admin:rooms_room_{name}", args=[room.pk, *args])
        return format_html(
            '<button type="submit" class="button" formaction="{}" formmethod="post">{}</button>', url, label
        )

    @admin.display(description="present now")
    def live_panel(self, room: Room) -> SafeString:
        people = list(room.participants.exclude(state=Participant.State.LEFT))
        if not people:
            return format_html("<em>nobody</em>")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (p.login, p.role, p.state, self._button(room, "kick", "Kick", p.login) if room.is_active else "")
                for p in people
            ),
        )
        return format_html("<table><tr><th>login</th><th>role</th><th>state</th><th></th></tr>{}</table>", rows)

    @admin.display(description="media now")
    def media_panel(self, room: Room) -> SafeString:
        """What each media worker relays for the room: its peer connections, inbound bitrate and loss."""
        by_worker = placement_figures(room.pk) if room.is_active else {}
        if not by_worker:
            return format_html("<em>no media</em>")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    worker,
                    f.publications,
                    f.playbacks,
                    f"{f.bitrate_in / 1000:.0f}",
                    f"{100 * f.packets_lost / f.packets_expected:.1f}" if f.packets_expected else "-",
                )
                for worker, f in sorted(by_worker.items())
            ),
        )
        return format_html(
            "<table><tr><th>worker</th><th>publications</th><th>playbacks</th><th>kbit/s in</th>"
            "<th>loss %</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="streams now")
    def streams_panel(self, room: Room) -> SafeString:
        streams = list(Stream.objects.filter(participant__room=room, status__in=LIVE).select_related("participant"))
        if not streams:
            return format_html("<em>none</em>")

        def actions(s: Stream) -> SafeString:
            return format_html(
                "{} {} {}",
                self._button(room, "mute", "Mute audio", s.public_id, "audio"),
                self._button(room, "mute", "Mute video", s.public_id, "video"),
                self._button(room, "unpublish", "Force-unpublish", s.public_id),
            )

        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    s.name,
                    s.participant.login,
                    s.status,
                    f"audio {'muted' if s.audio_muted else 'on'}, video {'muted' if s.video_muted else 'on'}",
                    actions(s),
                )
                for s in streams
            ),
        )
        return format_html(
            "<table><tr><th>stream</th><th>owner</th><th>status</th><th>mute</th><th></th></tr>{}</table>", rows
        )

    @admin.display(description="recent messages")
    def messages_panel(self, room: Room) -> SafeString:
        recent = list(room.messages.order_by("-sent_at", "-pk")[:RECENT_MESSAGES])[::-1]
        if not recent:
            return format_html("<em>none</em>")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    m.sent_at.strftime("%H:%M:%S"),
                    m.sender_login or "server",
                    "everyone" if m.to_everyone else ", ".join(m.recipient_logins),
                    m.text[:200],
                )
                for m in recent
            ),
        )
        return format_html("<table><tr><th>time</th><th>from</th><th>to</th><th>text</th></tr>{}</table>", rows)

    @admin.action(description="Finalize selected rooms (everyone is told and leaves)")
    def finalize_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        for room in queryset.filter(finalized_at__isnull=True):
            _moderate(request, room, "finalize", f"Room {room.name} finalized.")

    # --- per-row buttons on the change page -------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            # path: a login may contain "/" (finding 9 of issue 11).
            path("<int:room_id>/kick/<path:login>/", view(require_POST(self.kick_view)), name="rooms_room_kick"),
            path(
                "<int:room_id>/mute/<str:stream>/<str:track>/",
                view(require_POST(self.mute_view)),
                name="rooms_room_mute",
            ),
            path(
                "<int:room_id>/unpublish/<str:stream>/",
                view(require_POST(self.unpublish_view)),
                name="rooms_room_unpublish",
            ),
            *super().get_urls(),
        ]

    def _live_room(self, request: HttpRequest, room_id: int) -> Room:
        room = get_object_or_404(Room, pk=room_id)
        if not self.has_change_permission(request, room):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return room

    def _back(self, room: Room) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:rooms_room_change", args=[room.pk]))

    def kick_view(self, request: HttpRequest, room_id: int, login: str) -> HttpResponse:
        """Kick one participant of a live room."""
        room = self._live_room(request, room_id)
        _moderate(request, room, "kick", f"{login} was kicked.", login=login)
        return self._back(room)

    def mute_view(self, request: HttpRequest, room_id: int, stream: str, track: str) -> HttpResponse:
        """Force-mute a stream's audio or video."""
        room = self._live_room(request, room_id)
        fields = {"audio": True} if track == "audio" else {"video": True}
        _moderate(request, room, "mute", f"Stream {track} muted.", stream=stream, **fields)
        return self._back(room)

    def unpublish_view(self, request: HttpRequest, room_id: int, stream: str) -> HttpResponse:
        """Force-unpublish a stream."""
        room = self._live_room(request, room_id)
        _moderate(request, room, "unpublish", "Stream unpublished.", stream=stream)
        return self._back(room)


class _LiveRoomOnly:
    """Objects of finished rooms are read-only."""

    def room_of(self, obj: Any) -> Room:
        raise NotImplementedError

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not self.room_of(obj).is_active:
            return False
        return super().has_change_permission(request, obj)  # type: ignore[misc]


@admin.register(Participant)
class ParticipantAdmin(_LiveRoomOnly, admin.ModelAdmin):
    """Participants; kicking reaches the live connection at once."""

    list_display = ("login", "room", "state", "role", "joined_at", "left_at")
    list_filter = ("state", "role", ActiveFilter)
    search_fields = ("login", "room__name")
    raw_id_fields = ("room", "user")
    readonly_fields = ("room", "login", "state", "channel_name", "joined_at", "disconnected_at", "left_at", "user")
    actions = ["kick_participants"]

    def room_of(self, obj: Participant) -> Room:
        return obj.room

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Kick selected participants")
    def kick_participants(self, request: HttpRequest, queryset: QuerySet[Participant]) -> None:
        present = queryset.exclude(state=Participant.State.LEFT).filter(room__finalized_at__isnull=True)
        for participant in present.select_related("room"):
            _moderate(request, participant.room, "kick", f"{participant.login} was kicked.", login=participant.login)


@admin.register(Stream)
class StreamAdmin(_LiveRoomOnly, admin.ModelAdmin):
    """Streams; force-mute and force-unpublish reach the live connections at once."""

    list_display = ("name", "participant", "kind", "status", "audio_muted", "video_muted", "video_codec", "created_at")
    list_filter = ("kind", "status", ActiveFilter, "audio_muted", "video_muted", "record")
    search_fields = ("name", "public_id", "participant__login", "participant__room__name")
    raw_id_fields = ("participant",)
    readonly_fields = [f.name for f in Stream._meta.fields if f.name != "id"]
    actions = ["force_unpublish", "force_mute_audio", "force_mute_video"]

    def room_of(self, obj: Stream) -> Room:
        return obj.participant.room

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _each_live(self, queryset: QuerySet[Stream]) -> list[Stream]:
        return list(queryset.filter(status__in=LIVE).select_related("participant__room"))

    @admin.action(description="Force-unpublish selected streams")
    def force_unpublish(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        for stream in self._each_live(queryset):
            _moderate(
                request, stream.participant.room, "unpublish", f"{stream.name} unpublished.", stream=stream.public_id
            )

    @admin.action(description="Force-mute audio of selected streams")
    def force_mute_audio(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        for stream in self._each_live(queryset):
            _moderate(
                request, stream.participant.room, "mute", f"{stream.name} muted.", stream=stream.public_id, audio=True
            )

    @admin.action(description="Force-mute video of selected streams")
    def force_mute_video(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        for stream in self._each_live(queryset):
            _moderate(
                request, stream.participant.room, "mute", f"{stream.name} muted.", stream=stream.public_id, video=True
            )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages (read-only: history is not edited)."""

    list_display = ("sender_login", "room", "to_everyone", "short_text", "sent_at")
    list_filter = ("to_everyone",)
    search_fields = ("text", "sender_login", "room__name")
    raw_id_fields = ("room", "sender", "recipients")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]


@admin.register(UserRole)
class UserRoleAdmin(admin.ModelAdmin):
    """The room role of logged-in users (publisher when unset)."""

    list_display = ("user", "role")
    list_filter = ("role",)
    search_fields = ("user__username",)
    raw_id_fields = ("user",)


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """REST API keys: the key is shown once, when created; only its hash is stored."""

    list_display = ("name", "prefix", "active", "created_at", "last_used_at")
    list_filter = ("active",)
    search_fields = ("name", "prefix")
    fields = ("name", "active", "prefix", "created_at", "last_used_at")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        if not change:
            raw = obj.set_new_key()
            super().save_model(request, obj, form, change)
            messages.warning(
                request, f"The new API key is {raw} — copy it now, it is not stored and cannot be shown again."
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        count = queryset.update(active=False)
        messages.success(request, f"{count} key(s) revoked.")


class WebhookEndpointForm(forms.ModelForm):
    """Pick the events with checkboxes."""

    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in WEBHOOK_EVENTS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="message_sent is opt-in.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "secret", "events", "active", "description")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Webhook receivers: URL, secret and events."""

    form = WebhookEndpointForm
    list_display = ("url", "active", "event_list", "description", "deliveries_link")
    list_filter = ("active",)
    search_fields = ("url", "description")

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events or [])

    @admin.display(description="delivery log")
    def deliveries_link(self, obj: WebhookEndpoint) -> SafeString:
        url = reverse("admin:rooms_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">{} deliveries</a>', url, obj.deliveries.count())


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: every event sent to every endpoint, with attempts and the last error."""

    list_display = (
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
        "delivered_at",
        "short_error",
    )
    list_filter = ("status", "event_type", "endpoint")
    search_fields = ("event_id", "sequence_key", "last_error")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, obj: WebhookDelivery) -> str:
        return obj.last_error[:80]

    @admin.action(description="Retry selected deliveries now")
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = queryset.exclude(status=WebhookDelivery.Status.SUCCEEDED).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now(), claimed_until=None
        )
        webhooks.wake()
        messages.success(request, f"{count} deliveries queued again.")
