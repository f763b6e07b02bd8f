"""Django admin for join-token revocation: paste a token (or its jti) to refuse it from now on."""

from __future__ import annotations

from typing import Any

import jwt
from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from rooms.exceptions import RoomError
from rooms.models import RevokedToken
from rooms.tokens import MAX_JTI_LENGTH, revoke


def token_fields(value: str) -> tuple[str, str]:
    """The ``(jti, room)`` a pasted token or bare jti names (the token's signature is not needed to revoke it)."""
    value = value.strip()
    if value.count(".") != 2:
        return value, ""
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise forms.ValidationError("this is neither a join token nor a jti") from None
    jti, room = claims.get("jti"), claims.get("room", "")
    if not isinstance(jti, str) or not jti:
        raise forms.ValidationError("this token has no jti: it cannot be revoked (it is refused at hello anyway)")
    return jti, room if isinstance(room, str) else ""


class RevokeTokenForm(forms.ModelForm):
    """The add form: the token or its jti, and why."""

    token = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="The join token, or its jti (from the REST answer)."
    )

    class Meta:
        model = RevokedToken
        fields = ("reason",)

    def clean_token(self) -> str:
        jti, room = token_fields(self.cleaned_data["token"])
        if not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise forms.ValidationError(f"a jti has 1..{MAX_JTI_LENGTH} characters")
        self.cleaned_data["room"] = room
        return jti


@admin.register(RevokedToken)
class RevokedTokenAdmin(admin.ModelAdmin):
    """Revoked join tokens: a hello with one fails with token_revoked until it would have expired."""

    list_display = ("jti", "room", "reason", "revoked_at", "expires_at")
    search_fields = ("jti", "room")
    readonly_fields = ("jti", "room", "reason", "revoked_at", "expires_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = RevokeTokenForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("token", "reason") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RevokedToken, form: Any, change: bool) -> None:
        """Revoke through rooms.tokens.revoke (the one place that does it)."""
        data = form.cleaned_data
        try:
            revoke(data["token"], room=data.get("room", ""), reason=data.get("reason") or f"admin ({request.user})")
        except RoomError as exc:
            messages.error(request, exc.message)
            return
        saved = RevokedToken.objects.get(jti=data["token"])
        obj.pk, obj.jti, obj.room, obj.revoked_at, obj.expires_at = (
            saved.pk, saved.jti, saved.room, saved.revoked_at, saved.expires_at,
        )
