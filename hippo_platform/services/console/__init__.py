"""console: one static page listing accounts, indexes and document counts.

The page talks only to the console's own `/api/...` routes, which forward to the
controller (`CONTROLLER_URL`): same origin, so no CORS, and the browser never needs
to know where the controller lives.
"""
