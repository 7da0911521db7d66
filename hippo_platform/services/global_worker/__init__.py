"""global_worker: the full profile's stand-in for the search router.

It forwards searches to the cell and applies the merchandising rules admin_server
stored (pin, bury). It reads the rules table directly, with a signed stdlib request,
so it carries no AWS SDK.
"""
