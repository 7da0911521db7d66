"""Seeding a running stack: account, indexes, documents, then admin data, then files.

Idempotent by construction: the account `.hippodrome/seed.json` records for this seed
(under `accounts`, one per seed used) is reused while the cell still knows it and its
key still works; indexes that exist are kept
(a 409 is success here); documents are upserts under fixed ids; settings and rules are
PUTs. So seeding twice leaves the same data, and a stack restarted on its saved state
keeps its credentials. A service that is down stops the seed with one line naming it
and its URL; nothing is written to the files until the data is in.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hippo_contract.e2e_env import SeedLockError
from hippo_platform.seed import data
from hippo_platform.seed.endpoints import CONTRACT_VARS, StackView
from hippo_platform.seed.files import (
    ENV_FILE,
    SEED_FILE,
    UnusableSeedFile,
    read_seed_file,
    seeding,
    write_seed_files,
    write_seed_record,
)
from hippo_platform.services.common import HttpError
from hippo_platform.services.common.client import JsonClient, PeerResponse, segment
from hippo_platform.services.common.errors import NotJsonAnswer

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
ADMIN_PROFILES = ("ecom", "full")
EXIT_UNWRITABLE = 10  # README's exit codes: a file or folder Hippodrome must write


@dataclass
class SeedError(Exception):
    """One line: what failed and what to do; `code` is the seed program's exit code."""

    text: str
    code: int = 1

    def __str__(self) -> str:
        return self.message()

    def message(self) -> str:
        return self.text


Say = Callable[[str], None]


def _request(client: JsonClient, method: str, path: str, **kw: Any) -> PeerResponse:
    """The peer's answer, whatever its status; a peer that is down is one SeedError line."""
    try:
        return client.request(method, path, **kw)
    except NotJsonAnswer as exc:  # it is up: "not reachable ... is the stack up?" misled
        raise SeedError(f"{exc.message} to {method} {path}: `hd logs --service "
                        f"{client.peer}` shows why") from None
    except HttpError:
        raise SeedError(f"{client.peer} is not reachable at {client.base_url}: is the stack up "
                        "(`hd status`)?") from None


def _call(client: JsonClient, method: str, path: str, **kw: Any) -> Any:
    """The body of a 2xx; any other answer is a SeedError."""
    answer = _request(client, method, path, **kw)
    if answer.ok:
        return answer.body
    raise _refused(client, method, path, answer)


def _refused(client: JsonClient, method: str, path: str, answer: PeerResponse) -> SeedError:
    return SeedError(f"{client.peer} at {client.base_url} answered {answer.status} to "
                     f"{method} {path}: {answer.error_text()}")


def seed_stack(root: Path, seed: int, view: StackView, say: Say = print) -> dict[str, Any]:
    """Seed the stack `view` describes; returns the record written to seed.json. One
    seed at a time (files.seeding): the account it reuses and both files agree."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(seeding(root))
        except SeedLockError as exc:
            raise SeedError(f"cannot write {exc.filename}: {exc.strerror}. Make it and its "
                            "folder writable (chmod u+w; chattr -i for an immutable file; "
                            "free disk space), then seed again; nothing was seeded",
                            code=EXIT_UNWRITABLE) from None
        return _seed_stack(root, seed, view, say)


def _record(root: Path) -> dict[str, Any]:
    """seed.json's record ({} before the first seed); a sentence for one that cannot be.
    `accounts` must be an object of objects too: a list there (a hand edit) was read as
    none, and the next write dropped every account it held (adv27 i/3)."""
    try:
        record = read_seed_file(root)
    except UnusableSeedFile as exc:
        raise SeedError(f"{exc} (nothing was seeded)") from None
    accounts = record.get("accounts")
    if accounts is not None and not (isinstance(accounts, dict) and all(
            isinstance(v, dict) for v in accounts.values())):
        raise SeedError(f"{root / SEED_FILE}: its 'accounts' is not an object of accounts "
                        "by seed (as seeding writes it): fix it, or move it away (it "
                        "records each seed's account: keep a copy), then seed again (nothing "
                        "was seeded)")
    return record


def _check_writable(root: Path) -> None:
    """Both files can be written where they go, before anything is seeded: a folder
    named .env.e2e was a traceback, after seed.json had been written anew (the two files
    no longer named the same seeding)."""
    for path in (root / SEED_FILE, root / ENV_FILE):
        if path.is_dir():
            raise SeedError(f"{path} is a folder; seeding writes a file there: move the "
                            "folder away, then seed again (nothing was seeded)")


def _seed_stack(root: Path, seed: int, view: StackView, say: Say) -> dict[str, Any]:
    _check_writable(root)
    _record(root)  # said before anything is made, as every refusal here
    if view.cell != "local":
        raise SeedError(f"the stack runs against the '{view.cell}' cell; seed data is only "
                        "written into the local fake_cell (--cell local)")
    started = time.monotonic()
    controller = JsonClient(view.controller_url, peer="controller")
    cell = JsonClient(view.cell_url, peer="fake_cell")
    _call(controller, "GET", "/healthz")
    _admin_can_take(view)
    account = _account(root, seed, controller, say)
    key = {"x-api-key": account["apiKey"]}
    indexes: list[dict[str, Any]] = []
    for name in data.INDEXES:
        made = _request(controller, "POST", "/api/v2/indexes", headers=key,
                        body={"indexName": name, "settings": data.index_settings(name)})
        if not made.ok and made.status != 409:  # 409: made by an earlier seed, kept
            raise _refused(controller, "POST", "/api/v2/indexes", made)
        docs = data.documents(seed, name)
        _call(cell, "POST", f"/indexes/{segment(name)}/documents", headers=key,
              body={"documents": docs})
        indexes.append({"indexName": name, "documentIds": [d["_id"] for d in docs],
                        "created": made.status != 409})
    admin = _admin(seed, view, account["apiKey"], say)
    accounts = _accounts(_record(root))
    accounts[str(seed)] = {k: account[k] for k in ("accountId", "apiKey", "name")}
    record = {
        "seed": seed,
        "seededAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "controllerUrl": view.controller_url,
        "cellUrl": view.cell_url,
        "account": account,
        "indexes": indexes,
        "admin": admin,
        "accounts": accounts,
    }
    _write_files(root, record, _env_values(seed, view, account))
    docs_total = sum(len(ix["documentIds"]) for ix in indexes)
    say(f"seed {seed}: account {account['accountId']} ({'reused' if account['reused'] else 'new'})"
        f", {len(indexes)} indexes, {docs_total} documents"
        + (f", settings and {len(admin['rules'])} rules via admin_server" if admin["seeded"]
           else f"; admin data skipped ({admin['reason']})")
        + f" in {time.monotonic() - started:.2f}s")
    say(f"wrote {root / '.hippodrome' / 'seed.json'} and {root / '.env.e2e'}")
    return record


def _write_files(root: Path, record: dict[str, Any], values: dict[str, str]) -> None:
    """Both files or neither, and a failure is a sentence: an immutable .env.e2e was a
    traceback, after seed.json had been replaced (they then named different seedings)."""
    try:
        write_seed_files(root, record, values, header=(
            "Written by hippodrome's seed (python -m hippo_platform.seed / invoke seed); "
            "do not edit.\nLoad it with `source .env.e2e`, or run a suite with `hd e2e PATH`."))
    except OSError as exc:
        raise SeedError(
            f"cannot write {exc.filename}: {exc.strerror}. Make it and its folder writable "
            "(chmod u+w; chattr -i for an immutable file; free disk space), then seed "
            f"again; the data is in the stack, but {root / SEED_FILE} and {root / ENV_FILE} "
            "were left as they were (both name the last seeding)",
            code=EXIT_UNWRITABLE) from None


def _accounts(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every seed's account seed.json records, by seed. Only the last seed's was kept,
    so seeding 7 then 42 again made a second `hippodrome-seed-42` account (and its
    indexes and documents), one more each time the seed changed back."""
    found = record.get("accounts")
    out = {k: v for k, v in found.items() if isinstance(v, dict)} \
        if isinstance(found, dict) else {}
    last = record.get("account")
    if isinstance(last, dict) and isinstance(record.get("seed"), int):
        out.setdefault(str(record["seed"]), last)  # a seed.json from before `accounts`
    return out


def _sendable(value: object) -> bool:
    """Fit for a header and a path: a hand-edited key with a newline or a non-Latin
    letter made the request itself fail, a traceback instead of a new account."""
    return isinstance(value, str) and 0 < len(value) <= 512 and value.isascii() \
        and value.isprintable() and " " not in value


GONE = (401, 403, 404)
"""The cell's answers (passed through by the controller) that a recorded account or its
key no longer exists there: a new account is made then, and only then."""


def _account(root: Path, seed: int, controller: JsonClient, say: Say) -> dict[str, Any]:
    recorded = _accounts(_record(root)).get(str(seed))
    previous = recorded or {}
    if recorded is not None and not all(_sendable(previous.get(k))
                                        for k in ("apiKey", "accountId")):
        # (an id or key of the wrong type, or none, went by in silence: adv59 F7)
        say(f"seed: the account recorded for seed {seed} in seed.json is not usable (an id "
            "or key that is missing, not a string, or cannot go in a request); making a "
            "new one")
    elif previous.get("apiKey"):
        account_id, api_key = str(previous.get("accountId")), str(previous["apiKey"])
        known = _request(controller, "GET", "/api/v2/accounts/" + segment(account_id))
        works = _request(controller, "GET", "/api/v2/indexes", headers={"x-api-key": api_key})
        if known.ok and works.ok:
            return {"accountId": account_id, "apiKey": api_key, "name": previous.get("name"),
                    "reused": True}
        for path, answer in (("/api/v2/accounts/" + segment(account_id), known),
                             ("/api/v2/indexes", works)):
            # Only the cell's own "unknown account" or "bad key" means gone. A 502 (the
            # cell down or restarting) made a second account and new keys, and the e2e
            # suites held the old ones (adv24 b/1).
            if not answer.ok and answer.status not in GONE:
                raise SeedError(f"{_refused(controller, 'GET', path, answer)}; the account "
                                "seed.json records could not be checked, so nothing was "
                                "seeded: once `hd status` shows fake_cell and controller "
                                "running, `hd seed` again")
        say(f"seed: the recorded account {account_id} is gone from the cell; making a new one")
    name = data.ACCOUNT_NAME.format(seed=seed)
    made = _call(controller, "POST", "/api/v2/accounts", body={"name": name})
    account = {"accountId": made["accountId"], "apiKey": made["apiKey"], "name": name}
    _remember(root, seed, account)
    return {**account, "reused": False}


def _remember(root: Path, seed: int, account: dict[str, Any]) -> None:
    """Record an account the moment it is made, under `accounts` (the last seeding's
    record and .env.e2e stay as they were): a seed that failed after making it (an
    admin_server answering 500 mid-seed) left it recorded nowhere, and every seed after
    made another."""
    record = _record(root)
    accounts = _accounts(record)
    accounts[str(seed)] = account
    try:
        write_seed_record(root, {**record, "accounts": accounts})
    except OSError as exc:
        raise SeedError(
            f"cannot write {exc.filename}: {exc.strerror}. Make it and its folder writable "
            "(chmod u+w; chattr -i for an immutable file; free disk space), then seed "
            f"again; account {account['accountId']} was made in the cell but could not be "
            f"recorded (the next seed makes another), and {root / SEED_FILE} and "
            f"{root / ENV_FILE} were left as they were (both name the last seeding)",
            code=EXIT_UNWRITABLE) from None


def _admin_can_take(view: StackView) -> None:
    """A SeedError when the stack's admin_server is not running. Asked before anything
    is made: found only after the account, indexes and documents, a refused seed left
    them in the cell, recorded nowhere, and the next seed made a second account (adv24
    b/7)."""
    row = (view.rows or {}).get("admin_server")
    if row is None:
        return
    if row.get("state") == "external":  # yours: it is seeded through while it answers
        if row.get("healthy"):
            return
        raise SeedError("admin_server is external (you run it) and does not answer, so "
                        "settings and rules cannot be seeded: start it yourself, then `hd "
                        "seed` (nothing was seeded)")
    if row.get("state") in ("pending", "starting"):  # the stack is still coming up
        raise SeedError(f"admin_server is {row.get('state')} (the stack is still starting), "
                        "so settings and rules cannot be seeded yet: `hd seed` again once "
                        "`hd status` shows it running (nothing was seeded)")
    if row.get("state") != "running":
        raise SeedError(f"admin_server is {row.get('state')}, so settings and rules cannot be "
                        "seeded: `hd start --service admin_server`, then `hd seed` (nothing "
                        "was seeded)")


def _admin(seed: int, view: StackView, api_key: str, say: Say) -> dict[str, Any]:
    """Settings and rules through admin_server, when the stack runs one."""
    url = view.env.get("ADMIN_SERVER_URL") or view.url_of("admin_server")
    profile = view.env.get("HIPPODROME_PROFILE") or "?"
    skip = {"seeded": False, "settings": [], "rules": []}
    if view.rows:
        if view.rows.get("admin_server") is None:
            return {**skip, "reason": f"admin_server is not part of this stack (profile {profile})"}
        _admin_can_take(view)
    elif profile not in ADMIN_PROFILES:
        return {**skip, "reason": f"profile {profile} has no admin_server"}
    if not url:
        return {**skip, "reason": "no ADMIN_SERVER_URL"}
    admin = JsonClient(url, peer="admin_server")
    auth = {"Authorization": f"Bearer {api_key}"}
    settings: list[str] = []
    rules: list[dict[str, Any]] = []
    for index in data.INDEXES:
        path = f"/api/v1/indexes/{segment(index)}"
        _call(admin, "PUT", path + "/settings", headers=auth, body=data.admin_settings(seed, index))
        settings.append(index)
        for rule in data.merchandising_rules(seed, index):
            body = {k: rule[k] for k in ("action", "documentId", "query")}
            _call(admin, "PUT", f"{path}/merchandising/rules/{segment(rule['ruleId'])}",
                  headers=auth, body=body)
            rules.append({**rule, "indexName": index})
    return {"seeded": True, "url": url, "settings": settings, "rules": rules}


def _env_values(seed: int, view: StackView, account: dict[str, Any]) -> dict[str, str]:
    """`.env.e2e`'s variables in name order: in the environment's order, the seed job
    `up` runs and `hd seed` wrote the same values in a different order."""
    values = {"ENVIRONMENT": "hippodrome"}
    values.update({k: v for k, v in view.env.items() if v and k in CONTRACT_VARS})
    values["HIPPODROME_RANDOM_SEED"] = str(seed)
    values.update(view.service_urls())
    values.setdefault("CONTROLLER_URL", view.controller_url)
    values.setdefault("MARQO_BASE_URL", view.cell_url)
    values.update(DUMMY_AWS)
    values.update({
        "HIPPODROME_API_KEY": str(account["apiKey"]),
        "HIPPODROME_ACCOUNT_ID": str(account["accountId"]),
        "HIPPODROME_SEED_INDEXES": ",".join(data.INDEXES),
    })
    return dict(sorted(values.items()))
