"""admin_worker stand-in: the admin API's edge worker, forwarding to admin_server."""
