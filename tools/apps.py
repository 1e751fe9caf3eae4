from django.apps import AppConfig


class ToolsConfig(AppConfig):
    """Demo, simulator, load generator and benchmarks (management commands; not the product)."""

    name = "tools"
    verbose_name = "Tools"
