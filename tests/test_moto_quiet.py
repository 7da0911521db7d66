"""The bundled moto command logs every request except the orchestrator's liveness probe
(hippo_platform/services/moto_quiet), on a real moto server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from stackutil import free_ports, wait_for

from hippo_tasks.supervision.probes import http_ok


def test_probe_requests_are_not_logged_and_other_requests_are(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = (tmp_path / "moto.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippo_platform.services.moto_quiet", "-H", "127.0.0.1",
         "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: asyncio.run(http_ok(port, "/moto-api/", 1.0)), timeout=60,
                 what="moto answering")
        for _ in range(3):  # the orchestrator's own probe, as the daemon sends it
            assert asyncio.run(http_ok(port, "/moto-api/", 2.0))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json",
                                    timeout=10) as resp:
            assert resp.status == 200
        wait_for(lambda: "/moto-api/data.json" in Path(log.name).read_text(), timeout=10,
                 what="the data.json request in the log")
        time.sleep(0.2)  # anything still buffered for the probes would have arrived
        text = Path(log.name).read_text()
        assert '"GET /moto-api/data.json HTTP/1.1" 200' in text
        assert '"GET /moto-api/ HTTP/1.0"' not in text, text
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


REGIONS_CHECK = """
import json, sys
from moto.core.base_backend import AccountSpecificBackend
from hippo_platform.services.moto_quiet import regions
assert regions.install() and regions.install()  # idempotent
from moto.sqs.models import sqs_backends
from moto.dynamodb.models import dynamodb_backends
sqs_backends["123456789012"]["eu-central-1"].create_queue("q")
dynamodb_backends["123456789012"]["ap-southeast-2"]
untouched = AccountSpecificBackend.get_session.cache_info().currsize == 0
session = AccountSpecificBackend.get_session()
report = {"untouched": untouched, "narrower": {}}
for service in sorted(regions.EVERY_REGION_SERVICES):
    botocore_says = {r for p in session.get_available_partitions()
                     for r in session.get_available_regions(service, partition_name=p)}
    missing = botocore_says - set(regions.partition_regions())
    if missing or not botocore_says:
        report["narrower"][service] = sorted(missing) or "botocore lists no region"
table = AccountSpecificBackend._generate_regions
report["other"] = table(None, "route53") == table.hippodrome_original(None, "route53")
print(json.dumps(report))
"""


def test_region_lists_skip_botocores_endpoint_tables_and_are_never_narrower() -> None:
    """moto_quiet/regions.py: the stack's services get their regions without a boto3
    session (no endpoints.json, no API model parsed for it), every region botocore
    lists for them is still accepted, and any other service gets botocore's answer."""
    out = subprocess.run([sys.executable, "-c", REGIONS_CHECK], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["untouched"], "a backend table still asked a boto3 session for regions"
    assert report["narrower"] == {}, report["narrower"]
    assert report["other"] is True


def test_region_lists_fall_back_to_botocore_when_partitions_json_cannot_be_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A botocore without a readable partitions.json (moved, zipped): botocore is asked,
    as moto always did, rather than every request to the service failing."""
    from hippo_platform.services.moto_quiet import regions

    def unreadable() -> list[str]:
        raise FileNotFoundError("partitions.json")

    monkeypatch.setattr(regions, "partition_regions", unreadable)
    asked: list[str] = []

    def botocore_says(_self: object, service: str) -> list[str]:
        asked.append(service)
        return ["us-east-1"]

    generate = regions.regions_without_endpoint_tables(botocore_says)
    assert generate(None, "sqs") == ["us-east-1"] and asked == ["sqs"]
    assert generate(None, "route53") == ["us-east-1"] and asked == ["sqs", "route53"]


def test_a_shell_aws_profile_naming_no_profile_does_not_break_moto(tmp_path: Path) -> None:
    """moto writes its AWS errors through a botocore session: with an AWS_PROFILE from a
    `.bashrc` naming no profile here, every error answer (GetQueueUrl of a queue not made
    yet) was a 500, and `hd up --profile ecom` failed (adv29 o/6)."""
    (port,) = free_ports(1)
    log = (tmp_path / "moto.log").open("w+")
    env = {**os.environ, "HOME": str(tmp_path), "AWS_PROFILE": "no-such-here",
           "AWS_DEFAULT_PROFILE": "nope"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippo_platform.services.moto_quiet", "-H", "127.0.0.1",
         "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: asyncio.run(http_ok(port, "/moto-api/", 1.0)), timeout=60,
                 what="moto answering")
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/", method="POST",
            data=b"Action=GetQueueUrl&QueueName=none-such&Version=2012-11-05",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/"
                                      "us-east-1/sqs/aws4_request, SignedHeaders=host, "
                                      "Signature=x"})
        try:
            urllib.request.urlopen(req, timeout=10)
            status = 200
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 400, (status, Path(log.name).read_text()[-2000:])
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
