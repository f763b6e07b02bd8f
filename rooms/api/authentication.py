"""API-key authentication: ``Authorization: Api-Key <key>``."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from rooms.models import APIKey

logger = logging.getLogger(__name__)

KEYWORD = "Api-Key"


class APIKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate a backend by an API key; ``request.auth`` becomes the APIKey."""

    def authenticate(self, request: Request) -> tuple[Any, APIKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() != KEYWORD.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Api-Key header: give exactly one key.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        key = APIKey.from_raw(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return AnonymousUser(), key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class APIKeyScheme(OpenApiAuthenticationExtension):
    """Describe the Api-Key header in the OpenAPI schema."""

    target_class = "rooms.api.authentication.APIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; keys are created in the admin.",
        }
