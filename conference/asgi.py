"""ASGI entry point: the real client address, then HTTP through Django and WebSockets through the Room API consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conference.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from conference import gctune  # noqa: E402
from conference.client_address import RealClientAddressMiddleware  # noqa: E402
from rooms.routing import websocket_urlpatterns  # noqa: E402

# The real client address (TRUSTED_PROXIES) before anything reads scope["client"].
application = RealClientAddressMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)

# Everything is loaded: what is there now lives as long as the process (conference.gctune).
gctune.tune()
