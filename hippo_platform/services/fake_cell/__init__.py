"""fake_cell: a Marqo-like data plane (accounts, API keys, indexes, documents, BM25
search) with crash-safe local state. See `api` for routes, `search` for ranking and the
filter syntax, `journal` for persistence."""
