"""agentic_search stand-in: conversations that search through search_proxy."""
