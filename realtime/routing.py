"""WebSocket URL routing."""

from django.urls import path, re_path

from consumers.not_found import NotFoundConsumer
from consumers.observe import ObserveConsumer
from consumers.ping import PingConsumer
from consumers.voice import VoiceConsumer

websocket_urlpatterns = [
    path("ws/voice/", VoiceConsumer.as_asgi()),
    path("ws/observe/<str:name>/", ObserveConsumer.as_asgi()),
    path("ws/ping/", PingConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),  # Last: any other path is `not_found`, 4404.
]
