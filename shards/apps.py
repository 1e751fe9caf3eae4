from django.apps import AppConfig
from django.conf import settings

from core import redis as core_redis


class ShardsConfig(AppConfig):
    """The lowest Django app; its ``ready`` hands the Django-free core its Redis URL."""

    name = "shards"
    verbose_name = "Shards"

    def ready(self) -> None:
        """Point the core's Redis clients at ``settings.REDIS_URL`` (read when a client is made)."""
        core_redis.configure(url_provider=lambda: settings.REDIS_URL)
