"""``python -m clicklab``."""

import sys

from clicklab.cli import main

sys.exit(main())
