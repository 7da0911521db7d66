"""The MCP server for a running stack: `hd mcp` (stdio) and the daemon's `/mcp` (HTTP).

Layers, each importable without the next:

- `backend`: the small interface the tools need (`Stack`) and its two implementations,
  over the daemon's HTTP API (`hd mcp`, a separate process) and over the daemon's own
  command interface (`/mcp`, in the daemon). No MCP SDK.
- `tools` (with `schemas`): every tool as one table row: name, description, JSON
  schemas, hints, and a plain function of a `Stack` and the arguments. No MCP SDK, so
  the tools are tested and benchmarked without it.
- `server`: the SDK glue (a lowlevel `Server` built from the table) and the stdio entry.
- `http_bridge`: the SDK's streamable HTTP transport run inside the daemon's own HTTP
  server, imported on the first `/mcp` request only (the SDK costs ~50 MB and ~0.7 s).
"""
