"""HTTP routes of the rooms app."""

from django.urls import path

from rooms import views

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("conference/", views.page("rooms/conference.html", "Conference"), name="conference"),
    path("video-chat/", views.page("rooms/video-chat.html", "Two Way Video Chat"), name="video-chat"),
    path("screen-sharing/", views.page("rooms/screen-sharing.html", "Video Chat & Screen"), name="screen-sharing"),
]
