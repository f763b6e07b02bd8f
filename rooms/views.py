"""HTML pages: the index and the three conference pages."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """Links to the three pages."""
    return render(request, "rooms/index.html")


def page(template: str, title: str):  # type: ignore[no-untyped-def]
    """A view rendering one of the conference pages."""

    def view(request: HttpRequest) -> HttpResponse:
        return render(request, template, {"title": title})

    return view


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness probe."""
    return JsonResponse({"status": "ok"})
