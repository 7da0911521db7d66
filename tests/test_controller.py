"""controller against a real fake_cell process: what it creates exists in the cell,
the cell's statuses come through, and a dead cell is a 502 naming its URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from service_process import ServiceProcess, ServiceStarter, free_port

SECRET = "s3cret-value-never-logged"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServiceProcess]]:
    folder = tmp_path_factory.mktemp("controller")
    with ServiceStarter(folder) as start:
        cell = start.start("fake_cell", args=["--state-dir", str(folder / "state")])
        env = {
            "CONTROL_PLANE_URL_OVERRIDE": cell.base_url,
            "CONTROLLER_CELL": "local",
            "DEBUG": "true",
            "SECRET_KEY": SECRET,
        }
        yield cell.base_url, start.start("controller", env=env)


@pytest.fixture(scope="module")
def account(stack: tuple[str, ServiceProcess]) -> dict[str, Any]:
    _, controller = stack
    response = requests.post(f"{controller.base_url}/api/v2/accounts", json={"name": "acme"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def api(
    controller: ServiceProcess, method: str, path: str, key: str | None = None, **kw: Any
) -> requests.Response:
    headers = {"x-api-key": key} if key is not None else {}
    return requests.request(method, controller.base_url + path, headers=headers, timeout=10, **kw)


def test_account_created_through_the_controller_exists_in_the_cell(
    stack: tuple[str, ServiceProcess], account: dict[str, Any]
) -> None:
    cell_url, controller = stack
    assert account["accountId"] and account["apiKey"] and account["cell"] == "local"
    in_cell = requests.get(f"{cell_url}/accounts/{account['accountId']}").json()
    assert in_cell["name"] == "acme"
    who = requests.get(f"{cell_url}/account", headers={"x-api-key": account["apiKey"]})
    assert who.json()["accountId"] == account["accountId"]
    got = api(controller, "GET", f"/api/v2/accounts/{account['accountId']}").json()
    assert got["name"] == "acme" and "apiKey" not in got
    listed = api(controller, "GET", "/api/v2/accounts").json()["results"]
    assert account["accountId"] in {a["accountId"] for a in listed}


def test_index_lifecycle_end_to_end(
    stack: tuple[str, ServiceProcess], account: dict[str, Any]
) -> None:
    cell_url, controller = stack
    key = account["apiKey"]
    body = {"indexName": "shop", "settings": {"type": "structured"}}
    made = api(controller, "POST", "/api/v2/indexes", key, json=body)
    assert made.status_code == 201 and made.json()["indexName"] == "shop"
    cell_headers = {"x-api-key": key}
    in_cell = requests.get(f"{cell_url}/indexes/shop", headers=cell_headers).json()
    assert in_cell["settings"] == {"type": "structured"}
    docs = {"documents": [{"title": "a"}, {"title": "b"}]}
    requests.post(f"{cell_url}/indexes/shop/documents", json=docs, headers=cell_headers)
    listed = api(controller, "GET", "/api/v2/indexes", key).json()["results"]
    assert [(ix["indexName"], ix["numberOfDocuments"]) for ix in listed] == [("shop", 2)]
    one = api(controller, "GET", "/api/v2/indexes/shop", key).json()
    assert one["numberOfDocuments"] == 2 and one["settings"] == {"type": "structured"}
    per_account = api(controller, "GET", f"/api/v2/accounts/{account['accountId']}/indexes")
    assert per_account.json()["results"][0]["numberOfDocuments"] == 2
    assert api(controller, "DELETE", "/api/v2/indexes/shop", key).status_code == 200
    assert requests.get(f"{cell_url}/indexes/shop", headers=cell_headers).status_code == 404
    assert api(controller, "GET", "/api/v2/indexes", key).json() == {"results": []}


@pytest.mark.parametrize(
    ("method", "path", "key", "body", "status"),
    [
        ("GET", "/api/v2/accounts/acc_nope", None, None, 404),
        ("GET", "/api/v2/accounts/acc_nope/indexes", None, None, 404),
        ("POST", "/api/v2/accounts", None, {"name": ""}, 400),
        ("POST", "/api/v2/accounts", None, [1], 400),
        ("GET", "/api/v2/indexes", None, None, 401),
        ("GET", "/api/v2/indexes", "hk_wrong", None, 401),
        ("POST", "/api/v2/indexes", "hk_wrong", {"indexName": "x"}, 401),
        ("POST", "/api/v2/indexes", "GOOD", {"settings": {}}, 400),
        ("POST", "/api/v2/indexes", "GOOD", {"indexName": "x", "settings": 3}, 400),
        ("POST", "/api/v2/indexes", "GOOD", {"indexName": "bad name!"}, 400),
        ("DELETE", "/api/v2/indexes/never-made", "GOOD", None, 404),
        ("GET", "/api/v2/indexes/never-made", "GOOD", None, 404),
        ("PUT", "/api/v2/accounts", None, None, 405),
        ("GET", "/api/v3/anything", None, None, 404),
    ],
)
def test_error_statuses(
    stack: tuple[str, ServiceProcess],
    account: dict[str, Any],
    method: str,
    path: str,
    key: str | None,
    body: Any,
    status: int,
) -> None:
    _, controller = stack
    key = account["apiKey"] if key == "GOOD" else key
    response = api(controller, method, path, key, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_duplicate_index_is_409(stack: tuple[str, ServiceProcess], account: dict[str, Any]) -> None:
    _, controller = stack
    body = {"indexName": "twice"}
    assert api(controller, "POST", "/api/v2/indexes", account["apiKey"], json=body).ok
    again = api(controller, "POST", "/api/v2/indexes", account["apiKey"], json=body)
    assert again.status_code == 409


def test_logs_that_settings_are_set_but_never_the_secret(
    stack: tuple[str, ServiceProcess],
) -> None:
    out = stack[1].output()
    assert "SECRET_KEY set" in out and "DEBUG on" in out and "cell 'local'" in out
    assert SECRET not in out


def test_unreachable_cell_is_a_502_naming_it(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceStarter(tmp_path) as start:
        controller = start.start("controller", env={"CONTROL_PLANE_URL_OVERRIDE": dead})
        for method, path, key, body in [
            ("POST", "/api/v2/accounts", None, {"name": "x"}),
            ("GET", "/api/v2/accounts/acc_1", None, None),
            ("GET", "/api/v2/indexes", "hk_1", None),
        ]:
            response = api(controller, method, path, key, json=body)
            assert response.status_code == 502
            assert dead in response.json()["error"]
        assert requests.get(f"{controller.base_url}/healthz").json()["cellUrl"] == dead
        assert "SECRET_KEY not set" in controller.output()
        assert controller.terminate() == 0
