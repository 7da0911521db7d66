"""console over a real controller and fake_cell: the page, the proxy routes, and a
502 naming the controller when it is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter, free_port


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("console")
    with ServiceStarter(folder) as start:
        cell = start.start("fake_cell", args=["--state-dir", str(folder / "state")])
        controller = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": cell.base_url})
        made = requests.post(f"{controller.base_url}/api/v2/accounts", json={"name": "shop"})
        key = made.json()["apiKey"]
        headers = {"x-api-key": key}
        requests.post(
            f"{controller.base_url}/api/v2/indexes", json={"indexName": "items"}, headers=headers
        )
        docs = {"documents": [{"t": "one"}, {"t": "two"}, {"t": "three"}]}
        requests.post(f"{cell.base_url}/indexes/items/documents", json=docs, headers=headers)
        yield start.start("console", env={"CONTROLLER_URL": controller.base_url})


def test_serves_the_page(console: ServiceProcess) -> None:
    page = requests.get(f"{console.base_url}/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Hippodrome console" in page.text and "/api/accounts" in page.text
    assert requests.get(f"{console.base_url}/healthz").json()["service"] == "console"


def test_proxies_accounts_indexes_and_counts(console: ServiceProcess) -> None:
    accounts = requests.get(f"{console.base_url}/api/accounts").json()["results"]
    assert [a["name"] for a in accounts] == ["shop"]
    account_id = accounts[0]["accountId"]
    assert requests.get(f"{console.base_url}/api/accounts/{account_id}").json()["name"] == "shop"
    indexes = requests.get(f"{console.base_url}/api/accounts/{account_id}/indexes").json()
    assert [(ix["indexName"], ix["numberOfDocuments"]) for ix in indexes["results"]] == [
        ("items", 3)
    ]


def test_unknown_records_and_routes(console: ServiceProcess) -> None:
    assert requests.get(f"{console.base_url}/api/accounts/acc_none").status_code == 404
    assert requests.get(f"{console.base_url}/api/nothing").status_code == 404
    assert requests.post(f"{console.base_url}/api/accounts").status_code == 405


def test_controller_down_is_a_502_naming_it(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceStarter(tmp_path) as start:
        console = start.start("console", env={"CONTROLLER_URL": dead})
        response = requests.get(f"{console.base_url}/api/accounts")
        assert response.status_code == 502
        assert dead in response.json()["error"] and "controller" in response.json()["error"]
        assert requests.get(f"{console.base_url}/").status_code == 200
        assert console.terminate() == 0
