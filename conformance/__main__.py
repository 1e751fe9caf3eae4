"""``python -m conformance``: run the conformance kit (conformance/runner.py)."""

import sys

from conformance.runner import main

sys.exit(main())
