"""search_proxy: the search API's front door, forwarding every search to global_worker.

It checks that a key is present (the worker and the cell check that it is valid) and
otherwise adds nothing: what global_worker answers is what the client gets. When the
worker cannot be reached the answer is a 502 in the reference gateway's words,
"Failed to fetch from global_worker", naming its URL, because in the ecom profile
global_worker is external and the first thing to check is whether it is running.
"""
