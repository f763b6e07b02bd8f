"""Django admin for room oversight."""

from django.contrib import admin

from rooms.models import Message, Participant, Room, Stream


class ParticipantInline(admin.TabularInline):
    model = Participant
    extra = 0
    fields = ("login", "state", "role", "joined_at", "left_at")
    readonly_fields = ("joined_at", "left_at")
    show_change_link = True


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at", "finalized_at", "max_participants", "record", "locked")
    list_filter = ("record", "locked", ("finalized_at", admin.EmptyFieldListFilter))
    search_fields = ("name",)
    date_hierarchy = "created_at"
    inlines = [ParticipantInline]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ("login", "room", "state", "role", "joined_at", "left_at")
    list_filter = ("state", "role")
    search_fields = ("login", "room__name")
    raw_id_fields = ("room", "user")


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("name", "participant", "kind", "status", "audio_muted", "video_muted", "video_codec", "created_at")
    list_filter = ("kind", "status", "audio_muted", "video_muted", "record")
    search_fields = ("name", "public_id", "participant__login")
    raw_id_fields = ("participant",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("sender_login", "room", "to_everyone", "short_text", "sent_at")
    list_filter = ("to_everyone",)
    search_fields = ("text", "sender_login", "room__name")
    raw_id_fields = ("room", "sender", "recipients")

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]
