"""The names of the AWS resources provisioning makes that services must find again.

Here, not in provision.py, because services import them: provision.py is a job with
its boto3 client and records, and a service importing it paid for those (1.3 MB with
dataclasses) for two string functions.
"""

from __future__ import annotations

import hashlib
import re

ROLE_SUFFIX = "EventPipesRole"
_BUCKET_MAX = 63
_ROLE_MAX = 64


def bucket_name(table_prefix: str) -> str:
    """`{prefix}exports` made into a valid S3 bucket name.

    The rule: lowercase; every run of characters other than a-z, 0-9 and '-' becomes
    one '-' (dots are dropped too, avoiding the '..' and IP-address rules); repeated
    '-' collapse to one (so no 'xn--' prefix can appear); leading/trailing '-' go;
    a name longer than 63 characters is cut to 54 and ended with '-' and 8 hex digits
    of the full name's SHA-1, so two long prefixes do not collide.
    `Dev_Feature/X-` -> `dev-feature-x-exports`.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", f"{table_prefix}exports".lower())
    name = re.sub(r"-{2,}", "-", name).strip("-")
    if len(name) > _BUCKET_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _BUCKET_MAX - 9].rstrip('-')}-{digest}"
    return name


def role_name(table_prefix: str) -> str:
    """The pipes' IAM role: `{prefix}EventPipesRole`, shortened like buckets past 64 chars."""
    name = re.sub(r"[^\w+=,.@-]+", "-", f"{table_prefix}{ROLE_SUFFIX}")
    if len(name) > _ROLE_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _ROLE_MAX - 9]}-{digest}"
    return name
