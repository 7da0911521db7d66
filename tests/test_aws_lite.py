"""common.aws_lite, the services' stdlib AWS client: every call the services make, on a
real moto server (and cross-checked with boto3 reading what it wrote, and the other way
round); signatures equal to botocore's and accepted by a moto that checks them; AWS
error codes; retries, stale keep-alive sockets and timeouts against a real scripted HTTP
server; and the running services, exercised, never importing boto3 or botocore."""

from __future__ import annotations

import base64
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import moto_server
import pytest
import requests
from moto_server import DUMMY_CREDENTIALS, free_port, isolate_aws_env, running_moto
from scripted_http import Scripted, serving
from service_process import ServiceProcess, ServiceStarter

from hippo_platform.provision import bucket_name, provision
from hippo_platform.services.common.aws_lite import (
    TIMEOUT,
    UNREACHABLE,
    AwsClient,
    AwsConfig,
    AwsConfigError,
    AwsError,
    Credentials,
)
from hippo_platform.services.common.aws_lite_dynamo import (
    DynamoTypeError,
    marshal,
    marshal_item,
    unmarshal_item,
)
from hippo_platform.services.common.aws_lite_sigv4 import sign
from hippo_platform.services.fake_cognito.tokens import issue_token

moto_server_url = moto_server.moto_server_url
moto_endpoint = moto_server.moto_endpoint

PREFIX = "lite-"
SETTINGS = PREFIX + "EcomIndexSettingsTable"
RULES = PREFIX + "MerchandisingTable"
BUCKET = bucket_name(PREFIX)
ODD_KEYS = [
    "settings/INDEX#abc/SETTINGS.json",
    "merchandising/RULE#a%2Fb/7.json",
    "odd key/with space+plus&amp=eq?q ü~!'()*.json",
]


@pytest.fixture(scope="module")
def provisioned(moto_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tables, bucket and buses as aws_provision makes them, once for the module."""
    home = tmp_path_factory.mktemp("aws-home")
    with pytest.MonkeyPatch.context() as patch:
        isolate_aws_env(patch, home)
        for name, value in DUMMY_CREDENTIALS.items():
            patch.setenv(name, value)
        provision(PREFIX, moto_server_url)
    return PREFIX


@pytest.fixture
def lite(
    moto_endpoint: str, provisioned: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsClient]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    client = AwsClient.from_env()
    try:
        yield client
    finally:
        client.close()


def boto(service: str, endpoint: str) -> Any:
    """The reference: boto3 with the same (test-isolated) environment."""
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


# -- every call the services make, on moto ---------------------------------------------

ITEM: dict[str, Any] = {
    "pk": "RULE#lite-1",
    "sk": "INDEX#shop",
    "ratio": Decimal("1.5"),
    "big": 12345678901234567890123456789012345678,
    "negative": Decimal("-0.000001"),
    "bin": b"\x00\xff\x10",
    "tags": {"red", "blue"},
    "sizes": {1, Decimal("2.5")},
    "blobs": {b"a", b"\x00"},
    "nested": {"list": [1, "x", None, True, {"deep": [False]}], "empty": {}},
    "nothing": None,
    "text": "ünïcode \u2603",
}


def test_dynamodb_items_round_trip_and_match_boto3(lite: AwsClient, moto_endpoint: str) -> None:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    key = {"pk": {"S": ITEM["pk"]}, "sk": {"S": ITEM["sk"]}}
    first = lite.call("dynamodb", "PutItem",
                      {"TableName": RULES, "Item": marshal_item(ITEM), "ReturnValues": "ALL_OLD"})
    assert "Attributes" not in first
    got = lite.call("dynamodb", "GetItem", {"TableName": RULES, "Key": key})["Item"]
    assert unmarshal_item(got) == ITEM

    # What boto3 reads is what was meant, and what boto3 writes reads back the same here.
    ddb, deserializer, serializer = boto("dynamodb", moto_endpoint), TypeDeserializer(), (
        TypeSerializer())
    seen = ddb.get_item(TableName=RULES, Key=key)["Item"]
    assert {k: deserializer.deserialize(v) for k, v in seen.items()} == ITEM
    other = {**ITEM, "pk": "RULE#lite-2"}
    ddb.put_item(TableName=RULES, Item={k: serializer.serialize(v) for k, v in other.items()})
    back = lite.call("dynamodb", "GetItem",
                     {"TableName": RULES, "Key": {**key, "pk": {"S": "RULE#lite-2"}}})["Item"]
    assert unmarshal_item(back) == other

    query = lite.call("dynamodb", "Query", {
        "TableName": RULES, "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "RULE#lite-1"}}})
    assert query["Count"] == 1 and unmarshal_item(query["Items"][0]) == ITEM

    pages, seen_keys = 0, set[str]()
    body: dict[str, Any] = {"TableName": RULES, "Limit": 1,
                            "FilterExpression": "begins_with(pk, :p)",
                            "ExpressionAttributeValues": {":p": {"S": "RULE#lite-"}}}
    while True:
        page = lite.call("dynamodb", "Scan", body)
        pages += 1
        seen_keys.update(i["pk"]["S"] for i in page["Items"])
        if not page.get("LastEvaluatedKey"):
            break
        body["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert seen_keys == {"RULE#lite-1", "RULE#lite-2"} and pages >= 2

    gone = lite.call("dynamodb", "DeleteItem",
                     {"TableName": RULES, "Key": key, "ReturnValues": "ALL_OLD"})
    assert unmarshal_item(gone["Attributes"]) == ITEM
    assert "Item" not in lite.call("dynamodb", "GetItem", {"TableName": RULES, "Key": key})


def test_stream_calls_see_a_write(lite: AwsClient) -> None:
    table = lite.call("dynamodb", "DescribeTable", {"TableName": SETTINGS})["Table"]
    arn = table["LatestStreamArn"]
    assert table["StreamSpecification"]["StreamEnabled"] is True
    desc = lite.call("dynamodbstreams", "DescribeStream", {"StreamArn": arn})
    stream = desc["StreamDescription"]
    assert isinstance(stream["CreationRequestDateTime"], int | float)  # epoch seconds
    assert abs(stream["CreationRequestDateTime"] - time.time()) < 3600
    marker = f"INDEX#stream-{time.monotonic_ns()}"
    lite.call("dynamodb", "PutItem", {"TableName": SETTINGS, "Item": marshal_item(
        {"pk": marker, "sk": "SETTINGS", "bin": b"\x00\xff"})})
    records: list[dict[str, Any]] = []
    for shard in stream["Shards"]:
        iterator = lite.call("dynamodbstreams", "GetShardIterator", {
            "StreamArn": arn, "ShardId": shard["ShardId"],
            "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        answer = lite.call("dynamodbstreams", "GetRecords",
                           {"ShardIterator": iterator, "Limit": 1000})
        records.extend(answer["Records"])
        assert answer.get("NextShardIterator")
    mine = [r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == marker]
    assert [r["eventName"] for r in mine] == ["INSERT"]
    assert mine[0]["dynamodb"]["NewImage"]["bin"] == {"B": "AP8="}  # base64 on the wire
    seq = mine[0]["dynamodb"]["SequenceNumber"]
    after = lite.call("dynamodbstreams", "GetShardIterator", {
        "StreamArn": arn, "ShardId": stream["Shards"][-1]["ShardId"],
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq})
    assert after["ShardIterator"]


def test_put_events_on_a_bus(lite: AwsClient) -> None:
    entry = {"Source": "marqo.dynamodb", "DetailType": "EcomIndexSettings.INSERT",
             "Detail": json.dumps({"k": "v"}), "EventBusName": PREFIX + "EcomEventBus",
             "Resources": ["arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"]}
    answer = lite.call("events", "PutEvents", {"Entries": [entry]})
    assert answer["FailedEntryCount"] == 0 and answer["Entries"][0]["EventId"]
    with pytest.raises(AwsError) as caught:
        lite.call("events", "PutEvents", {"Entries": [{**entry, "EventBusName": "no-bus"}]})
    assert caught.value.code == "ResourceNotFoundException" and caught.value.status == 400
    assert "no-bus" in caught.value.message


def test_s3_objects_with_awkward_keys_match_what_boto3_sees(
    lite: AwsClient, moto_endpoint: str
) -> None:
    s3 = boto("s3", moto_endpoint)
    lite.head_bucket(BUCKET)
    for n, key in enumerate(ODD_KEYS):
        etag = lite.put_object(BUCKET, key, json.dumps({"n": n}).encode(), "application/json")
        assert etag.strip('"')
        assert json.loads(lite.get_object(BUCKET, key)) == {"n": n}
        seen = s3.get_object(Bucket=BUCKET, Key=key)
        assert json.loads(seen["Body"].read()) == {"n": n}
        assert seen["ContentType"] == "application/json"
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert listed >= set(ODD_KEYS)
    for key in ODD_KEYS:
        lite.delete_object(BUCKET, key)
        lite.delete_object(BUCKET, key)  # S3 deletes are idempotent
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert not listed & set(ODD_KEYS)


def test_aws_error_codes_and_messages(lite: AwsClient) -> None:
    cases: list[tuple[Callable[[], object], str, int, str]] = [
        (lambda: lite.call("dynamodb", "DescribeTable", {"TableName": "nope"}),
         "ResourceNotFoundException", 400, "nope"),
        (lambda: lite.call("dynamodb", "PutItem",
                           {"TableName": SETTINGS, "Item": {"pk": {"S": "x"}}}),
         "ValidationException", 400, "sk"),
        (lambda: lite.put_object("nope-bucket", "k", b"x"), "NoSuchBucket", 404, ""),
        (lambda: lite.get_object(BUCKET, "never/written"), "NoSuchKey", 404, ""),
        (lambda: lite.head_bucket("nope-bucket"), "NoSuchBucket", 404, "nope-bucket"),
    ]
    for call, code, status, needle in cases:
        with pytest.raises(AwsError) as caught:
            call()
        err = caught.value
        assert err.code == code, err
        assert err.status == status and err.code and err.code in str(err)
        assert needle in err.message
        assert err.attempts == 1  # a 4xx is not retried
        for secret in (DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                       DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"]):
            assert secret not in str(err)
    # moto fails on an iterator it never issued with a bare 500: retried, then reported
    # with the status as its code, which event_pipe takes as "find the stream again".
    with pytest.raises(AwsError) as caught:
        lite.call("dynamodbstreams", "GetRecords", {"ShardIterator": "bogus"})
    assert (caught.value.code, caught.value.status, caught.value.attempts) == ("500", 500, 3)


# -- signatures ----------------------------------------------------------------------

SIGNING_CASES = [
    # service, signing name, method, host, path, params, headers, payload, token
    ("dynamodb", "POST", "127.0.0.1:9003", "/", {},
     {"content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.Scan"},
     b'{"TableName": "t"}', "tok"),
    ("dynamodb", "POST", "127.0.0.1:9003", "/",
     {}, {"content-type": "application/x-amz-json-1.0",
          "x-amz-target": "DynamoDBStreams_20120810.GetRecords"}, b"{}", None),
    ("events", "POST", "localhost", "/", {},
     {"content-type": "application/x-amz-json-1.1", "x-amz-target": "AWSEvents.PutEvents",
      "x-custom": "  spaced   out  value "}, b'{"Entries": []}', "tok"),
    ("dynamodb", "POST", "127.0.0.1:9003", "/a/./b/../c//d/", {"z": "1", "a": "x y/ü"},
     {"content-type": "application/x-amz-json-1.0"}, b"", None),
    ("s3", "PUT", "127.0.0.1:9003", "/bucket/settings/INDEX%23abc/SETTINGS.json", {},
     {"content-type": "application/json"}, b'{"a": 1}', "tok"),
    ("s3", "GET", "127.0.0.1:9003", "/bucket/odd%20key/a%2Bb%25.json", {}, {}, b"", None),
    ("s3", "GET", "127.0.0.1:9003", "/bucket", {"list-type": "2", "prefix": "odd key/ü+&="},
     {}, b"", "tok"),
    ("s3", "DELETE", "127.0.0.1:9003", "/bucket/a/../b", {}, {}, b"", None),
]


@pytest.mark.parametrize(
    ("service", "method", "host", "path", "params", "headers", "payload", "token"),
    SIGNING_CASES)
def test_signature_equals_botocores(
    service: str, method: str, host: str, path: str, params: dict[str, str],
    headers: dict[str, str], payload: bytes, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's whole add_auth at a fixed instant: the same headers, byte for byte."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    is_s3 = service == "s3"
    ours = sign(creds, service=service, region="eu-west-1", method=method, host=host,
                path=path, params=params, headers=headers, payload=payload,
                amz_date="20240102T030405Z", s3=is_s3)

    request = AWSRequest(method=method, url=f"http://{host}{path}", data=payload,
                         params=params, headers=dict(headers))
    signer_class = botocore.auth.S3SigV4Auth if is_s3 else botocore.auth.SigV4Auth
    signer_class(BotoCredentials(creds.access_key, creds.secret_key, token), service,
                 "eu-west-1").add_auth(request)
    theirs = {k.lower(): v for k, v in request.headers.items()}
    assert ours.pop("host") == host
    assert ours == theirs


@pytest.fixture(scope="module")
def checking_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second moto that checks every signature, after three unchecked setup calls."""
    log_path = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    yield from running_moto(log_path, {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})


def test_a_signature_checking_moto_accepts_ours_and_names_a_bad_secret(
    checking_moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_aws_env(monkeypatch, tmp_path)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    iam = boto("iam", checking_moto)
    iam.create_user(UserName="lite")
    allow = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="lite", PolicyName="all", PolicyDocument=json.dumps(allow))
    key = iam.create_access_key(UserName="lite")["AccessKey"]
    good = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    client = AwsClient(AwsConfig(checking_moto, "us-east-1", good))
    try:
        assert "TableNames" in client.call("dynamodb", "ListTables", {})
        client.call("events", "PutEvents", {"Entries": [
            {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "default"}]})
        client.send("CreateBucket", "s3", "PUT", "/lite-signed", s3=True)
        # moto 5.2.1's checker rejects botocore's own signature for keys holding '%',
        # '+', '&', '=', '(' or non-ASCII, and for query values holding '/' or ' ' (it
        # re-escapes them its own way); boto3 fails there exactly as this client does. So
        # the names here are those it verifies; the signer matches botocore's for all.
        for name in ("settings/INDEX#abc/SETTINGS.json", "odd key/with space?.json"):
            client.put_object("lite-signed", name, b"signed")
            assert client.get_object("lite-signed", name) == b"signed"
        listing = client.send("ListObjectsV2", "s3", "GET", "/lite-signed", s3=True,
                              params={"list-type": "2", "prefix": "odd"}).body.decode()
        assert re.findall(r"<Key>([^<]*)</Key>", listing) == ["odd key/with space?.json"]
    finally:
        client.close()
    wrong = AwsClient(AwsConfig(checking_moto, "us-east-1",
                                Credentials(key["AccessKeyId"], "not-the-secret")))
    for call in (lambda: wrong.call("dynamodb", "ListTables", {}),
                 lambda: wrong.get_object("lite-signed", ODD_KEYS[0])):
        with pytest.raises(AwsError) as caught:
            call()
        assert caught.value.code in ("SignatureDoesNotMatch", "InvalidSignatureException")
        assert caught.value.status in (400, 403) and "not-the-secret" not in str(caught.value)
    wrong.close()


# -- retries, keep-alive, timeouts: against a real, scripted HTTP server ---------------

@pytest.fixture
def scripted() -> Iterator[Scripted]:
    with serving() as server:
        yield server




def client_for(url: str, **options: Any) -> AwsClient:
    return AwsClient(AwsConfig(url, "us-east-1", Credentials("AKID", "secret-key-x")), **options)


def aws_type(code: str) -> dict[str, Any]:
    return {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"say {code}"}


def test_5xx_and_throttling_are_retried_with_fresh_signatures(scripted: Scripted) -> None:
    scripted.script = [(500, aws_type("InternalServerError"), 0),
                       (400, aws_type("ThrottlingException"), 0), (200, {"ok": 1}, 0)]
    client = client_for(scripted.url, attempts=3, backoff=0.01)
    assert client.call("dynamodb", "ListTables", {}) == {"ok": 1}
    assert len(scripted.seen) == 3
    assert all(s["authorization"].startswith("AWS4-HMAC-SHA256 ") for s in scripted.seen)
    assert {s["x-amz-target"] for s in scripted.seen} == {"DynamoDB_20120810.ListTables"}

    scripted.seen.clear()
    scripted.script = [(400, aws_type("ValidationException"), 0)]
    with pytest.raises(AwsError) as caught:
        client.call("dynamodb", "PutItem", {})
    assert caught.value.code == "ValidationException" and len(scripted.seen) == 1

    scripted.seen.clear()
    scripted.script = [(503, {}, 0)] * 3
    with pytest.raises(AwsError) as caught:
        client.call("dynamodb", "GetItem", {})
    err = caught.value
    assert (err.code, err.status, err.attempts, len(scripted.seen)) == ("503", 503, 3, 3)
    assert "after 3 attempts" in str(err)
    client.close()


def test_a_stale_keep_alive_connection_is_replaced_without_an_attempt(
    scripted: Scripted
) -> None:
    client = client_for(scripted.url, attempts=1)
    client.call("dynamodb", "ListTables", {})
    client.call("dynamodb", "ListTables", {})
    assert len(scripted.connections) == 1, "the second call reused the connection"
    # The server closes the idle socket (timeout 0.3 s); the client still holds it.
    deadline = time.monotonic() + 10
    while scripted.closed < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scripted.closed == 1
    client.call("dynamodb", "ListTables", {})  # one attempt allowed, and it succeeds
    assert len(scripted.seen) == 3 and len(scripted.connections) == 2
    client.close()


def test_a_timeout_is_reported_and_not_repeated(scripted: Scripted) -> None:
    scripted.script = [(200, {}, 1.0)]
    client = client_for(scripted.url, attempts=3, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(AwsError) as caught:
        client.call("events", "PutEvents", {"Entries": []})
    assert caught.value.code == TIMEOUT and "0.3s" in str(caught.value)
    assert time.monotonic() - started < 0.9 and len(scripted.seen) == 1
    client.close()


def test_retries_on_a_closed_port_end_with_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = client_for(url, attempts=3, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(AwsError) as caught:
        client.put_object("b", "k", b"x")
    elapsed = time.monotonic() - started
    err = caught.value
    assert err.code == UNREACHABLE and err.attempts == 3 and err.status is None
    assert f"cannot reach the AWS endpoint {url} after 3 attempts" in str(err)
    assert "Connection refused" in str(err) and "moto" in str(err)
    # `hd up --profile ecom` alone was the advice: with the stack running, it exits 7
    # and moto stays stopped (adv43 E/2)
    assert "`hd start --service moto` starts it in a running stack" in str(err)
    assert 0.07 <= elapsed < 2.0, elapsed  # two backed-off waits (0.05, 0.1, jittered)


def test_configuration_from_the_environment() -> None:
    base = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5", "AWS_ACCESS_KEY_ID": "a",
            "AWS_SECRET_ACCESS_KEY": "s"}
    config = AwsConfig.from_env(base)
    assert (config.region, config.credentials.token) == ("us-east-1", None)
    assert AwsConfig.from_env({**base, "AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    both = {**base, "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "ap-south-1",
            "AWS_SESSION_TOKEN": "t"}
    assert AwsConfig.from_env(both).region == "ap-south-1"
    assert AwsConfig.from_env(both).credentials.token == "t"
    assert "****" in repr(AwsConfig.from_env(base)) and "'s'" not in repr(config.credentials)
    for broken, needle in [({**base, "AWS_ENDPOINT_URL": ""}, "AWS_ENDPOINT_URL"),
                           ({k: v for k, v in base.items() if k != "AWS_SECRET_ACCESS_KEY"},
                            "AWS_SECRET_ACCESS_KEY")]:
        with pytest.raises(AwsConfigError, match=needle):
            AwsConfig.from_env(broken)
    for url in ("ftp://127.0.0.1:5", "http://", "http://127.0.0.1:5/some/path"):
        with pytest.raises(AwsConfigError, match="bad AWS endpoint"):
            AwsClient(AwsConfig(url, "us-east-1", Credentials("a", "s")))


# -- DynamoDB JSON, as boto3's TypeSerializer has it ------------------------------------

def test_marshal_agrees_with_boto3s_serializer() -> None:
    from boto3.dynamodb.types import Binary, TypeSerializer

    serializer = TypeSerializer()
    for value in (None, True, 0, -7, Decimal("1.50"), Decimal("1e-5"), "x", [1, "a"],
                  {"a": {"b": [None]}}, {"x"}, {3}, 10**37, Decimal("-1.2E+30")):
        assert marshal(value) == serializer.serialize(value), value
    theirs = serializer.serialize(b"\x00\xff")
    assert marshal(b"\x00\xff") == {"B": base64.b64encode(theirs["B"]).decode()}
    assert isinstance(theirs["B"], bytes | Binary)
    for bad in (1.5, 10**40, Decimal("NaN"), Decimal("Infinity"), {1, "a"}, object()):
        with pytest.raises(DynamoTypeError):
            marshal(bad)
        with pytest.raises(Exception):  # noqa: B017 (boto3 refuses them too)
            serializer.serialize(bad)
    with pytest.raises(DynamoTypeError):
        marshal(set())  # boto3 sends {"NS": []}, which DynamoDB refuses: said here instead


# -- the running services never load boto3 ----------------------------------------------

def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def test_running_services_never_import_boto3_or_botocore(
    moto_endpoint: str, provisioned: str, tmp_path: Path
) -> None:
    """Each service, started as the stack starts it and then used, with every import it
    ever makes logged (PYTHONPROFILEIMPORTTIME): none is boto3's or botocore's."""
    secret = "lite-cognito-secret"
    env = {**DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": moto_endpoint, "HIPPODROME_TABLE_PREFIX": PREFIX,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "NO_PROXY": "127.0.0.1", "FAKE_COGNITO_SECRET": secret,
           "PYTHONPROFILEIMPORTTIME": "1", "GLOBAL_WORKER_RULES_TTL": "0"}
    with ServiceStarter(tmp_path) as start:
        try:
            exercise_services(start, env, secret, tmp_path)
        finally:
            for svc in start.started:  # all at once; the starter then waits for the exits
                svc.signal(signal.SIGTERM)


def exercise_services(start: ServiceStarter, env: dict[str, str], secret: str,
                      tmp_path: Path) -> None:
    """Start the four services beside a fake_cell, and use every AWS call each makes."""
    cell = start.start("fake_cell", args=["--state-dir", str(tmp_path / "cell")])
    env["MARQO_BASE_URL"] = cell.base_url
    services: dict[str, ServiceProcess] = {
        "exporter": start.start("exporter", args=["--kind", "settings"], env=env),
        "event_pipe": start.start("event_pipe", env=env,
                                  args=["--state-dir", str(tmp_path / "pipe")]),
        "admin_server": start.start("admin_server", env=env),
        "global_worker": start.start("global_worker", env=env),
    }
    token = issue_token({"sub": "lite"}, secret)
    admin = f"{services['admin_server'].base_url}/api/v1/indexes/shop"
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.put(f"{admin}/settings", json={"n": 1.5}, headers=auth,
                        timeout=10).status_code == 200
    assert requests.put(f"{admin}/merchandising/rules/r1", headers=auth, timeout=10,
                        json={"action": "pin", "documentId": "d", "query": "q"}).ok
    assert requests.get(f"{admin}/merchandising/rules", headers=auth, timeout=10).ok
    event = {"detail-type": "EcomIndexSettings.INSERT", "detail": {
        "eventName": "INSERT", "keys": {"pk": {"S": "INDEX#lite"}, "sk": {"S": "S"}}}}
    assert requests.post(f"{services['exporter'].base_url}/events", json=event,
                         timeout=10).status_code == 200
    key = requests.post(f"{cell.base_url}/accounts", json={"name": "x"},
                        timeout=10).json()["apiKey"]
    requests.post(f"{cell.base_url}/indexes/shop", json={}, headers={"x-api-key": key},
                  timeout=10)
    found = requests.post(f"{services['global_worker'].base_url}/indexes/shop/search",
                          json={"q": "q"}, headers={"x-api-key": key}, timeout=10)
    assert found.status_code == 200 and "error" not in found.json()["merchandising"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the pipe relays the writes onto the bus
        stats = requests.get(f"{services['event_pipe'].base_url}/stats", timeout=5).json()
        if sum(t["bus_put"] for t in stats["tables"]) >= 2:
            break
        time.sleep(0.05)
    assert sum(t["bus_put"] for t in stats["tables"]) >= 2, stats
    for name, svc in services.items():
        out = svc.output()
        imported = re.findall(r"import time:\s+\d+ \|\s+\d+ \|\s+(\S.*)", out)
        assert any(m.strip() == "hippo_platform.services.common.aws_lite" for m in imported)
        aws_sdk = [m.strip() for m in imported if m.strip().startswith(("boto", "s3transfer"))]
        assert aws_sdk == [], f"{name} imported {aws_sdk[:5]}"
        print(f"{name}: RSS {rss_mb(svc.pid):.1f} MB, {len(imported)} modules")
