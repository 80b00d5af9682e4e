"""``python -m runbook_devtools.demo`` (``make demo``)."""

import sys

from runbook_devtools.demo import main

sys.exit(main())
