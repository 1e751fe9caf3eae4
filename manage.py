#!/usr/bin/env python
"""Django's command-line utility for the World Boss live-ops platform."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveops.settings")
    from django.core.management import execute_from_command_line

    from core.config import ConfigError, exit_on_config_error

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:  # a bad environment variable: its one line, exit status 2
        exit_on_config_error(exc)


if __name__ == "__main__":
    main()
