"""Deterministic seed data for a running stack, and the files end-to-end suites read.

`python -m hippo_platform.seed --project-root DIR [--seed N]` is the stack's `seed` job;
`hd seed` runs the same code against a stack that is already up. For one seed the
data is always the same (an account, a few indexes of generated products, and, when
admin_server runs, index settings and merchandising rules), and seeding again reuses
what is there, so a test suite can rely on exact document ids and titles.

The package imports nothing: `python -m hippo_platform.seed.probes` imports
it first, and what it loaded there was outside the commands' Ctrl+C guard (adv29 n/6).
"""
