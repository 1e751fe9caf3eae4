from django.apps import AppConfig


class BossesConfig(AppConfig):
    name = "bosses"
    verbose_name = "World bosses"
