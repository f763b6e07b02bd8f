"""Schemathesis over /api/schema/: generated requests to every operation never get a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from rooms.models import APIKey


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def sdp_text(ctx: object, value: object) -> bytes:
    """The WHIP/WHEP bodies (rooms.whip_schema) are SDP text."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def api_key() -> str:
    """A valid API key for the generated requests."""
    return APIKey.create_key("schemathesis")[1]


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case: schemathesis.Case, api_key: str) -> None:
    """Any input, authenticated with a valid key, gets a 2xx/4xx answer, never a 5xx."""
    case.call_and_validate(headers={"Authorization": f"Api-Key {api_key}"}, checks=[not_a_server_error])
