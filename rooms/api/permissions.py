"""Who may call the REST API: backends with an API key, staff with a session."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from rooms.models import APIKey


class HasAPIKey(BasePermission):
    """The request carries a valid, active API key."""

    message = "An API key is required (Authorization: Api-Key <key>)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, APIKey)


class IsStaffSession(BasePermission):
    """A logged-in staff user (the admin's session)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class IsRoomAPIClient(BasePermission):
    """The permission of every Room API endpoint: an API key or a staff session."""

    message = "Authenticate with an API key (Authorization: Api-Key <key>) or as staff."

    def has_permission(self, request: Request, view: Any) -> bool:
        return HasAPIKey().has_permission(request, view) or IsStaffSession().has_permission(request, view)
