"""``python -m runbook.cli``: the same as the ``runbook`` command."""

import sys

from runbook.cli import main

sys.exit(main())
