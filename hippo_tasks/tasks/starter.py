"""The files `hd init` writes: a commented stack file (own or bundled) and a tasks.py.

Data only: adding an example means editing a string here. tests/test_init.py loads
both stack files with the real loader and runs the first one.
"""

from __future__ import annotations

OWN_STACK = '''\
# hippodrome.toml: the stack `hd up` runs from this folder (written by `hd init`).
# Every field is in the README, "The stack file". `#` lines are examples: uncomment
# and edit them. Check the file without starting anything: `hd doctor`.
#   hd up             everything, in the foreground (Ctrl+C stops it)
#   hd up --detach    the same in the background; then hd status, hd logs, hd down

[stack]
defaults = false          # only the services below (true: the bundled stack as well)
dashboard_port = 9000     # the page and API of `hd up`: http://127.0.0.1:9000
# log_runs_kept = 10      # .logs/<stamp>/ folders kept
# liveness_interval = 10  # seconds between health probes of running services

# Variables every service gets (a service's own `env` wins):
# [env]
# LOG_LEVEL = "info"

# A job runs to completion; what depends on it starts once it exited 0.
[services.page]
kind = "job"
shell = "echo '<h1>It works</h1>' > index.html"   # one string, run by /bin/sh -c
# or, without a shell (a list: program, then its arguments):
# command = ["${python}", "make_page.py"]

# A service: keeps running; ready once its port accepts connections.
[services.web]
command = ["${python}", "-m", "http.server", "${port}", "--bind", "127.0.0.1"]
port = 8080               # ${port} above; also $PORT in its environment
depends_on = [{ name = "page", condition = "completed_successfully" }]
description = "serves index.html"
# readiness = { http = "/" }        # or { tcp = true } (the default with a port),
#                                   # { log = "regex" }, or "none"
# cwd = "web"                       # relative to this folder
# env = { LOG_LEVEL = "debug", API_URL = "${url:api}" }   # ${url:NAME}, ${port:NAME}
# env_file = [".env"]               # NAME=value lines; later files win, `env` wins over them
# stop_signal = "SIGINT"            # what stopping sends first (default SIGTERM)
# stop_timeout = 5                  # then SIGKILL after this many seconds
# start_timeout = 30                # seconds to become ready
# watch = ["**/*.html"]             # restart when a matching file changes (relative to cwd)
# setup = { command = ["npm", "ci"], creates = "node_modules" }  # once, if `creates` is missing
#                                   # (timeout = seconds bounds it: default 600)
# auto_restart = true               # restart after a crash, with backoff
# max_restarts = 5                  # quick crashes in a row before it is `failed`
# blocking = true                   # false: its failure is shown, the stack goes on
# profiles = ["core"]               # only with `hd up --profile core` (default: every profile)

# A database that the app waits for until it is healthy (ready), and stops fast:
# [services.db]
# command = ["postgres", "-D", "pgdata", "-p", "${port}", "-k", "/tmp"]
# port = 5432
# stop_signal = "SIGINT"            # PostgreSQL's fast shutdown
# setup = { command = ["initdb", "-D", "pgdata"], creates = "pgdata" }
#
# [services.migrate]
# kind = "job"
# shell = "psql -h 127.0.0.1 -p ${port:db} -d postgres -f schema.sql"
# depends_on = [{ name = "db", condition = "healthy" }]   # or "started"
#
# [services.app]
# command = ["${python}", "app.py"]
# port = 8000
# depends_on = ["db", { name = "migrate", condition = "completed_successfully" }]
#
# Something you run yourself, only probed and shown:
# [services.search]
# external = true
# port = 9200
'''
"""`hd init`: a small stack of one's own (`defaults = false`) that runs as it is."""

BUNDLED_STACK = '''\
# hippodrome.toml: the bundled stack (README, "The bundled stack") and your changes
# (written by `hd init --from-bundled`). `#` lines are examples: uncomment and edit.
# Your [services.X] changes only the fields it names of a bundled X (`env` key by key).
#   hd up [--profile core|ecom|full] [--detach]; hd status; hd down

[stack]
defaults = true           # keep the bundled services (false: only the services below)
# dashboard_port = 9000   # the page and API of `hd up`

# Switch a bundled service off:
# [services.console]
# enabled = false

# Change fields of a bundled service:
# [services.controller]
# env = { DEBUG = "true" }
# start_timeout = 60

# Add a service of your own beside the bundled ones:
# [services.api]
# command = ["${python}", "api.py", "--port", "${port}"]
# port = 8080
# env = { CONTROLLER_URL = "${url:controller}" }
# depends_on = [{ name = "controller", condition = "healthy" }]
# readiness = { http = "/healthz" }

# A job of your own, after the bundled `seed` job:
# [services.fixtures]
# kind = "job"
# shell = "${python} load_fixtures.py"
# depends_on = [{ name = "seed", condition = "completed_successfully" }]
# profiles = ["core"]
'''
"""`hd init --from-bundled`: the bundled stack kept, overrides shown as comments."""

TASKS_PY = '''\
"""Hippodrome's tasks in this folder: `invoke up`, `invoke status`, ... (as `hd ...`).

Written by `hd init --tasks`. Use the invoke installed beside Hippodrome (its venv's
`invoke`, or activate that venv). Tasks of your own can join them: `ns.add_task(...)`.
"""

from hippo_tasks.tasks import ns

__all__ = ["ns"]
'''
"""`hd init --tasks`: exposes the task tree to a plain `invoke` in that folder."""
