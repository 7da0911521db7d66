"""moto's region lists for the stack's services, without botocore's endpoint tables.

The first request to a moto service builds that service's backend table, and moto asks
a boto3 session which regions the service has. botocore answers by parsing
`endpoints.json` (1.2 MB of JSON, 7 MB once parsed) and the service's whole API model
(dynamodb's is 1.2 MB) just to read its endpoint prefix, and its session keeps both for
the life of the process; moto parses its own copy of each model to serve requests. On
the ecom stack that was 12.8 MB of moto's ~100 MB resident, for lists that are, for
every service the bundled stack calls, the same: every region of every partition.

So for those services the list comes from botocore's `partitions.json` (7 KB); any
other service (a user's service may call any) still asks botocore, as moto does. The
partition list can only be wider than botocore's own answer (a region where a service
is missing from AWS is accepted locally), never narrower; tests/test_moto_quiet.py
checks that against this install's botocore for each name below. If a moto upgrade
renames the hook, nothing is patched, and if botocore's partitions.json cannot be read,
botocore is asked: either way moto behaves as it always has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVERY_REGION_SERVICES = frozenset({
    "dynamodb", "dynamodbstreams", "events", "lambda", "logs", "pipes", "s3", "secretsmanager",
    "sns", "sqs", "sts",
})
"""The AWS services the bundled stack calls; each is in every region of every partition."""


def partition_regions() -> list[str]:
    """Every region of every partition botocore knows (no `*-global` pseudo-regions)."""
    import botocore

    data = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    return [region for partition in data["partitions"]
            for region in partition.get("regions", {}) if not region.endswith("-global")]


def regions_without_endpoint_tables(original: Callable[[Any, str], list[str]]
                                    ) -> Callable[[Any, str], list[str]]:
    """moto's `_generate_regions`, answering EVERY_REGION_SERVICES from partitions.json."""
    cached: list[str] = []

    def generate(self: Any, service_name: str) -> list[str]:
        if service_name not in EVERY_REGION_SERVICES:
            return original(self, service_name)
        if not cached:
            try:
                cached.extend(partition_regions())
            except (OSError, ValueError, KeyError, TypeError):  # a botocore without it
                return original(self, service_name)
        return list(cached)

    generate.hippodrome_original = original  # type: ignore[attr-defined]
    return generate


def install() -> bool:
    """Patch moto's backend tables; False (and moto untouched) if its hook is not there."""
    from moto.core import base_backend

    table = getattr(base_backend, "AccountSpecificBackend", None)
    original = getattr(table, "_generate_regions", None)
    if table is None or original is None:
        return False
    if hasattr(original, "hippodrome_original"):
        return True
    table._generate_regions = regions_without_endpoint_tables(original)
    return True
