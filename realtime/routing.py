"""WebSocket URL routing. The voice consumers register their routes here."""

from django.urls import path

from consumers.ping import PingConsumer

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
]
