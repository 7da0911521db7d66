"""admin_lambda on real processes and a real moto: its reference story (a burst of
ResourceNotFoundException in its first seconds) becomes a 503 with Retry-After on
/healthz and on every route until the tables exist, then settings and rules are read
straight from DynamoDB; bad names are 400, unknown indexes 404."""

from __future__ import annotations

import uuid
from pathlib import Path

import moto_server
import pytest
import requests
from moto_server import isolate_aws_env
from service_process import ServiceStarter, free_port, get_status
from stackutil import wait_for
from test_admin_server import aws_env, table_env

from hippo_platform.provision import provision

moto_server_url = moto_server.moto_server_url
EXIT_CONFIG = 78


def test_503_with_retry_until_provisioned_then_reads_the_tables(
        moto_server_url: str, tmp_path: Path) -> None:
    prefix = f"l{uuid.uuid4().hex[:8]}-"
    env = {**aws_env(moto_server_url, tmp_path), **table_env(prefix)}
    with ServiceStarter(tmp_path) as start:
        lam = start.spawn("admin_lambda", env=env, port=free_port())
        wait_for(lambda: get_status(lam.port) == 503, what="a 503 from /healthz")
        health = requests.get(f"{lam.base_url}/healthz")
        assert health.headers["Retry-After"] == "1" and health.json()["retryAfter"] == 1
        assert "ResourceNotFoundException" in health.json()["error"]
        assert "aws_provision" in health.json()["error"] and "retry" in health.json()["error"]
        early = requests.get(f"{lam.base_url}/api/v1/indexes/shop/settings")
        assert early.status_code == 503 and early.headers["Retry-After"] == "1"
        assert f"{prefix}EcomIndexSettingsTable" in early.json()["error"]
        with pytest.MonkeyPatch.context() as patch:
            isolate_aws_env(patch, tmp_path)
            for name, value in env.items():
                patch.setenv(name, value)
            provision(prefix, moto_server_url)
            from hippo_tasks.events import aws
            ddb = aws.client("dynamodb", endpoint_url=moto_server_url)
        wait_for(lambda: get_status(lam.port) == 200, what="healthy once the tables exist")
        ddb.put_item(TableName=f"{prefix}EcomIndexSettingsTable", Item={
            "pk": {"S": "INDEX#shop"}, "sk": {"S": "SETTINGS"}, "indexName": {"S": "shop"},
            "settings": {"M": {"typo": {"BOOL": True}, "size": {"N": "3"}}},
            "updatedAt": {"S": "2026-01-01T00:00:00Z"}, "updatedBy": {"S": "test"}})
        ddb.put_item(TableName=f"{prefix}MerchandisingTable", Item={
            "pk": {"S": "RULE#r1"}, "sk": {"S": "INDEX#shop"}, "ruleId": {"S": "r1"},
            "indexName": {"S": "shop"}, "action": {"S": "pin"}, "documentId": {"S": "d1"},
            "query": {"S": "lamp"}})
        got = requests.get(f"{lam.base_url}/api/v1/indexes/shop/settings").json()
        assert got["settings"] == {"typo": True, "size": 3} and got["updatedBy"] == "test"
        rules = requests.get(f"{lam.base_url}/api/v1/indexes/shop/merchandising/rules").json()
        assert [(r["ruleId"], r["action"]) for r in rules["rules"]] == [("r1", "pin")]
        missing = requests.get(f"{lam.base_url}/api/v1/indexes/other/settings")
        assert missing.status_code == 404 and "other" in missing.json()["error"]
        bad = requests.get(f"{lam.base_url}/api/v1/indexes/-x/settings")
        assert bad.status_code == 400 and "index name" in bad.json()["error"]
        assert requests.put(f"{lam.base_url}/api/v1/indexes/shop/settings").status_code == 405
        ddb.delete_table(TableName=f"{prefix}MerchandisingTable")
        gone = requests.get(f"{lam.base_url}/api/v1/indexes/shop/merchandising/rules")
        assert gone.status_code == 503 and gone.headers["Retry-After"] == "1"
        assert "ResourceNotFoundException" in gone.json()["error"]
        assert lam.terminate() == 0


def test_no_endpoint_or_table_names_exits_with_a_reason(tmp_path: Path) -> None:
    with ServiceStarter(tmp_path) as start:
        bare = start.spawn("admin_lambda", env={"AWS_ENDPOINT_URL": ""}, port=free_port())
        assert bare.wait_exit() == EXIT_CONFIG
        assert "is not set" in bare.output()
        no_aws = start.spawn("admin_lambda", env={"HIPPODROME_TABLE_PREFIX": "p-",
                                                  "AWS_ENDPOINT_URL": ""}, port=free_port())
        assert no_aws.wait_exit() == EXIT_CONFIG
        assert "AWS_ENDPOINT_URL" in no_aws.output()
