"""ASGI entry point: HTTP through Django, WebSockets through Channels routing, and the lifespan
scope (the hosted shards' bye on shutdown, transport.lifespan.hosted_lifespan)."""

import os

from django.core.asgi import get_asgi_application

from core.config import ConfigError, exit_on_config_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
try:
    django_asgi_app = get_asgi_application()
except ConfigError as exc:  # a bad environment variable: its one line, exit status 2
    exit_on_config_error(exc)

from django.conf import settings

from liveops.startup import authority_startup_check

# The gateway acknowledges damage: check that the authority persists it before serving (a
# loud warning, or a refusal to start under AUTHORITY_REQUIRE_PERSISTENCE: docs/durability.md).
authority_startup_check("asgi")

if settings.DEBUG:  # pages' CSS/JS under uvicorn without a collectstatic + web server
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from transport.lifespan import hosted_lifespan  # noqa: E402
from transport.routing import websocket_urlpatterns  # noqa: E402
from transport.socket_caps import SocketCapMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # outermost: a socket over its address's cap costs no session or user lookup
        "websocket": SocketCapMiddleware(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        # Channels has no lifespan handler of its own. Ours ends this process's hosted-shard
        # sessions with a bye when the server shuts down gracefully (uvicorn on SIGTERM runs
        # it in every worker process after closing the sockets): run uvicorn with
        # ``--lifespan on`` (or the default ``auto``), not ``off``.
        "lifespan": hosted_lifespan,
    }
)
