"""``python -m milestones.cli ...``, the same as ``python -m milestones ...``."""

import sys

from . import main

sys.exit(main())
