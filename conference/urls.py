"""URL configuration: pages, admin and the REST API."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from rooms.views import media_stats

urlpatterns = [
    path("admin/", admin.site.urls),
    path("media/stats", media_stats, name="media-stats"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"),
    path("api/", include("rooms.recordings.urls")),
    path("api/", include("rooms.api.urls")),
    path("", include("rooms.urls")),
]
