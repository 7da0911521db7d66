"""Hippodrome: a local-stack orchestrator driven by Invoke tasks.

Layers (DESIGN section 9), each importable alone: `model` (pure stack model),
`supervision` (processes, probes, logs), `registry` (the shared process registry),
`daemon` (command API and HTTP), `events` (AWS), `services` (the bundled stack),
`tasks` (thin Invoke task modules).
"""

__version__ = "0.1.0"
