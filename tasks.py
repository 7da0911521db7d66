"""Hippodrome's Invoke entry point: `invoke up --profile ecom` and friends.

The task tree is built once in hippo_tasks.tasks; this file only exposes it.
"""

from hippo_tasks.tasks import ns

__all__ = ["ns"]
