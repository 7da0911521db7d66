"""`python -m hippo_tasks.daemon --options JSON [--tls]`: the detached daemon.

Without --tls, OpenSSL is kept out of this process before asyncio can import it
(`keep_openssl_out` says why). A feature that needs TLS (events to real AWS) asks for
it with --tls.
"""

import sys

from hippo_tasks.daemon import keep_openssl_out

if "--tls" not in sys.argv:
    keep_openssl_out()

from hippo_tasks.supervision.ownership import OwnershipSoon  # noqa: E402

soon = OwnershipSoon()  # made beside the imports below (its docstring says why)

from hippo_tasks.daemon.main import main  # noqa: E402

sys.exit(main(None, soon))
