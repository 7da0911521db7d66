"""`python -m hippo_tasks.daemon --options JSON`: the detached daemon."""

import sys

from hippo_tasks.daemon.main import main

sys.exit(main())
