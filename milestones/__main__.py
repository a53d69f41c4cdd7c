"""``python -m milestones ...``: the CLI, as torchrun starts it on every rank (``-m milestones train ...``)."""

import sys

from .cli import main

sys.exit(main())
