"""HTTP routes of the rooms app."""

from django.urls import path

from rooms import views

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
]
