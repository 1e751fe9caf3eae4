from django.apps import AppConfig
from django.conf import settings
from django.core import checks

from core import redis as core_redis
from shards.checks import authority_topology_check


class ShardsConfig(AppConfig):
    """The lowest Django app; its ``ready`` hands the Django-free core its Redis URL."""

    name = "shards"
    verbose_name = "Shards"

    def ready(self) -> None:
        """Point the core's Redis clients at ``settings.REDIS_URL`` and ``REDIS_TOPOLOGY`` (read
        when a client is made) and register the topology's start-up check."""
        checks.register(authority_topology_check, "liveops")
        core_redis.configure(
            url_provider=lambda: settings.REDIS_URL, topology_provider=lambda: settings.REDIS_TOPOLOGY
        )
