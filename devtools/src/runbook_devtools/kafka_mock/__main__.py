"""``python -m runbook_devtools.kafka_mock``: see :func:`runbook_devtools.kafka_mock.cli.main`."""

import sys

from runbook_devtools.kafka_mock.cli import main

sys.exit(main())
