"""``python -m redisbatch``."""

import sys

from ._cli import main

sys.exit(main())
