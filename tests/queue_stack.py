"""The queue-driven upload path on real processes, for the tests of its services.

moto (the module's), a table prefix provisioned by the real provisioning job (so the
`{prefix}ecom-indexer` queue is the one the stack makes), fake_cell, fake_cognito,
ecom_ingest, admin_server with `ADMIN_UPLOADS=sqs`, ecom_indexer consuming the queue,
and the two front doors of the path: admin_worker and ecom_indexer_trigger.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from moto_server import isolate_aws_env
from service_process import ServiceProcess, ServiceStarter, free_port
from test_admin_server import aws_env, cell_account, provision_tables, start_together, table_env

from hippo_tasks.events import aws

SERVICES = ("cell", "cognito", "ingest", "admin", "indexer", "worker", "trigger")


@dataclass
class QueueStack:
    start: ServiceStarter
    procs: dict[str, ServiceProcess]
    prefix: str
    endpoint: str
    key: str
    home: Path
    env: dict[str, str]

    def url(self, name: str) -> str:
        return self.procs[name].base_url

    def client(self, service: str) -> Any:
        with pytest.MonkeyPatch.context() as patch:
            isolate_aws_env(patch, self.home)
            for name, value in aws_env(self.endpoint, self.home).items():
                patch.setenv(name, value)
            return aws.client(service, endpoint_url=self.endpoint)

    def search(self, q: str, index: str = "shop") -> list[str]:
        answer = requests.post(f"{self.url('cell')}/indexes/{index}/search", json={"q": q},
                               headers={"x-api-key": self.key}, timeout=5)
        return [h["_id"] for h in answer.json().get("hits", [])]

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.url('indexer')}/stats", timeout=5).json())


def queue_stack(moto_url: str, folder: Path) -> Iterator[QueueStack]:
    """Body of a module fixture: everything healthy, always stopped."""
    prefix = provision_tables(moto_url, folder)
    ports = {name: free_port() for name in SERVICES}
    env = {
        **aws_env(moto_url, folder),
        **table_env(prefix),
        "FAKE_COGNITO_SECRET": "queue-test-secret",
        "MARQO_BASE_URL": f"http://127.0.0.1:{ports['cell']}",
        "ECOM_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
        "ADMIN_SERVER_URL": f"http://127.0.0.1:{ports['admin']}",
        "ADMIN_UPLOADS": "sqs",
    }
    with ServiceStarter(folder) as start:
        specs = [
            ("fake_cell", ports["cell"], {}, ["--state-dir", str(folder / "cell")]),
            ("fake_cognito", ports["cognito"], env, []),
            ("ecom_ingest", ports["ingest"], {}, []),
            ("admin_server", ports["admin"], env, []),
            ("ecom_indexer", ports["indexer"], env, []),
            ("admin_worker", ports["worker"], env, []),
            ("ecom_indexer_trigger", ports["trigger"], env, []),
        ]
        procs = dict(zip(SERVICES, start_together(start, specs), strict=True))
        key = cell_account(procs["cell"].base_url, index="shop")
        yield QueueStack(start, procs, prefix, moto_url, key, folder, env)
