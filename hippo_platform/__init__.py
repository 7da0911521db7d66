"""The bundled platform: a local stand-in for the whole Cloud Control Plane.

Its services (`services/`), the seed job and the probes (`seed/`), the provisioning of
the ecom profile's AWS resources on moto (`provision.py`) and the stack file that runs
them all (`default_stack.toml`). The orchestrator, hippo_tasks, knows this package only
as that stack file and the commands it names; nothing here imports hippo_tasks either
(what both sides must spell alike is in hippo_contract). `nox -s lint` enforces both.
"""
