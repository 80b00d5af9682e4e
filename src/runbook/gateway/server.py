"""``runbook gateway``: the gateway app under uvicorn (one process; its starter thread runs inside)."""

from __future__ import annotations

import argparse
import logging


def gateway_command(args: argparse.Namespace) -> int:
    import uvicorn

    from runbook.gateway.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0
