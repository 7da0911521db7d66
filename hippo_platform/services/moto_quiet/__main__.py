"""The real moto server, minus one log line per liveness probe.

moto's server (werkzeug) logs every request. The orchestrator probes `GET /moto-api/`
every few seconds for as long as the stack runs, so a quiet stack's moto log and the
foreground terminal filled with identical access lines, burying the requests users
want to see. Only the probe's own request shape is dropped (HTTP/1.0, which boto3
never speaks); every other request is still logged exactly as moto logs it. moto's
region lists for the stack's services come from a small table (regions.py says why).

    python -m hippo_platform.services.moto_quiet -H HOST -p PORT  (moto.server's flags)
"""

from __future__ import annotations

import logging

PROBE_REQUEST = '"GET /moto-api/ HTTP/1.0"'


class DropProbeLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return PROBE_REQUEST not in record.getMessage()


def main() -> None:
    """Run as its own process (the stack's `moto` service)."""
    import os

    from hippo_platform.boto_client import no_account_settings

    no_account_settings(os.environ)  # read by moto's botocore before anything else
    logging.getLogger("werkzeug").addFilter(DropProbeLines())
    from moto.server import main as moto_main

    from hippo_platform.services.moto_quiet.regions import install

    install()

    moto_main()


if __name__ == "__main__":
    main()
