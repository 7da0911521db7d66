"""What the orchestrator (hippo_tasks) and the bundled platform (hippo_platform) agree on.

The two packages never import each other: the orchestrator runs the platform only as
commands named in a stack file, and the platform's programs reach the orchestrator only
over HTTP and through their environment. A few names still have to be spelled the
same on both sides of those boundaries (an HTTP header, the AWS resources one side
creates and the other checks, the files seeding writes and `invoke e2e` reads), and
they live here, once, as plain data. One piece of code lives here too, because both
sides run it and neither may import the other: the HTTP/1.1 request loop and head
reader (http_loop, http_head) the daemon and every bundled service serve with, in place
of http.server and its imports. This package imports nothing but the standard library,
and `nox -s lint` (import-linter) keeps it that way.
"""
