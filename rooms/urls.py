"""HTTP routes of the rooms app."""

from django.urls import path

from rooms import views

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("conference/", views.page("rooms/conference.html", "conference_title"), name="conference"),
    path("video-chat/", views.page("rooms/video-chat.html", "video_chat_title"), name="video-chat"),
    path("screen-sharing/", views.page("rooms/screen-sharing.html", "screen_sharing_title"), name="screen-sharing"),
]
