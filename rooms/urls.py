"""HTTP routes of the rooms app."""

from django.urls import path

from rooms import views, whip

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("conference/", views.page("rooms/conference.html", "conference_title"), name="conference"),
    path("video-chat/", views.page("rooms/video-chat.html", "video_chat_title"), name="video-chat"),
    path("whip/<str:room>", whip.whip_endpoint, name="whip"),
    path("whip/<str:room>/<str:session>", whip.session_resource, name="whip-session"),
    path("whep/<str:room>/<str:target>", whip.whep_endpoint, name="whep"),
    path("whep/<str:room>/<str:target>/<str:session>", whip.session_resource, name="whep-session"),
    path("whep-player/", whip.player, name="whep-player"),
    path("screen-sharing/", views.page("rooms/screen-sharing.html", "screen_sharing_title"), name="screen-sharing"),
]
