"""What the orchestrator (hippo_tasks) and the bundled platform (hippo_platform) agree on.

The two packages never import each other: the orchestrator runs the platform only as
commands named in a stack file, and the platform's programs reach the orchestrator only
over HTTP and through their environment. A few names still have to be spelled the
same on both sides of those boundaries (an HTTP header, the AWS resources one side
creates and the other checks, the files seeding writes and `invoke e2e` reads), and
they live here, once, as plain data. This package imports nothing but the standard
library, and `nox -s lint` (import-linter) keeps it that way.
"""
