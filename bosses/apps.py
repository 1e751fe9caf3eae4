from django.apps import AppConfig


class BossesConfig(AppConfig):
    name = "bosses"
    verbose_name = "World bosses"

    def ready(self) -> None:
        # The reward tables' and the templates' admin (docs/rewards.md, docs/liveops.md) sit beside bosses.admin, which the
        # layer contract forbids to import it; Django's autodiscovery only imports admin.py.
        from bosses import admin_rewards, admin_templates  # noqa: F401, PLC0415
