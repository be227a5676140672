"""The whole ASGI entry on one screen: HTTP to Django, WebSockets through the edge (refusals with
close codes, frame checks, credential re-checks), origin and auth checks."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
django_asgi_app = get_asgi_application()  # Loads settings and apps before anything imports models.

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from consumers.auth import WebSocketAuthMiddleware, WebSocketOriginValidator  # noqa: E402
from consumers.edge import WebSocketEdge  # noqa: E402
from conversation.background import lifespan_sweeper  # noqa: E402
from realtime.form_bodies import bodies_to_django  # noqa: E402
from realtime.liveness import liveness  # noqa: E402
from realtime.request_deadline import bound_requests  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.transport import close_on_failure  # noqa: E402

close_on_failure()  # daphne sends close 1009 for an oversized message instead of dropping TCP.
bound_requests()  # daphne closes a connection that does not send a whole request in time.
bodies_to_django()  # Twisted no longer parses form bodies on the event loop.

# lifespan_sweeper starts the idle memory sweep with the server (conversation/background.py);
# liveness answers /healthz on the event loop, before Django (realtime/liveness.py).
application = lifespan_sweeper(
    ProtocolTypeRouter(
        {
            "http": liveness(django_asgi_app),
            "websocket": WebSocketEdge(
                WebSocketOriginValidator(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns)))
            ),
        }
    )
)
