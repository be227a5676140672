"""WebSocket URL routing."""

from django.urls import path

from consumers.observe import ObserveConsumer
from consumers.ping import PingConsumer
from consumers.voice import VoiceConsumer

websocket_urlpatterns = [
    path("ws/voice/", VoiceConsumer.as_asgi()),
    path("ws/observe/<str:name>/", ObserveConsumer.as_asgi()),
    path("ws/ping/", PingConsumer.as_asgi()),
]
