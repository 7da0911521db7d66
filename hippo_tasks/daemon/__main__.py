"""`python -m hippo_tasks.daemon --options JSON [--tls]`: the detached daemon.

Without --tls, `ssl` is kept out of this process before asyncio can import it: the
daemon only talks plain HTTP on loopback, and OpenSSL costs ~5 MB of resident memory
for the whole life of the stack. A feature that needs TLS (events to real AWS) asks
for it with --tls.
"""

import sys

if "--tls" not in sys.argv:
    sys.modules["ssl"] = None  # type: ignore[assignment]

from hippo_tasks.supervision.ownership import OwnershipSoon  # noqa: E402

soon = OwnershipSoon()  # made beside the imports below (its docstring says why)

from hippo_tasks.daemon.main import main  # noqa: E402

sys.exit(main(None, soon))
