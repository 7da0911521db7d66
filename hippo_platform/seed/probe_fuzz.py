"""`probes --fuzz`: a hypothesis state machine driving the platform's APIs in random order.

Each run of the machine keeps a model of what it made (its indexes, their documents,
merchandising rules and settings) and checks every answer against it: the controller,
the cell's documents and search, search_proxy, and admin_server where the profile has
them. Every answer is classified once (probe_http): an infrastructure error (nothing
listening, a timeout, a broken connection, 502/503/504, a missing table) aborts the
step without judging the platform and counts toward the service's circuit breaker
(probe_breakers); anything else that is not the answer the model expects (a 500, a
wrong status, a document that should or should not be found) is a real failure.

After an infrastructure error the touched index's contents are uncertain (the write
may or may not have happened), so that index is no longer compared, only used.
Shrinking is off: every step is HTTP against a live stack and the steps leading to a
failure are printed as they ran.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hypothesis
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from hippo_platform.seed.probe_breakers import Ledger
from hippo_platform.seed.probe_http import Outcome
from hippo_platform.seed.probe_runner import (
    Budget,
    Enough,
    OutOfTime,
    Result,
    probe_settings,
    run_test,
)
from hippo_platform.seed.probe_target import Target, seg

F = TypeVar("F", bound=Callable[..., None])
SERVICES = ("controller", "fake_cell", "search_proxy", "admin_server")
picks = st.integers(0, 10**6)
texts = st.text(st.characters(categories=["L", "N", "Zs"]), max_size=12)


class Infrastructure(Exception):
    """The step could not reach a working service: abandon it, judge nothing."""


@dataclass
class Run:
    target: Target
    ledger: Ledger
    budget: Budget
    prefix: str = field(default_factory=lambda: f"hippodrome-probe-fuzz-{secrets.token_hex(3)}")
    serial: itertools.count[int] = field(default_factory=itertools.count)
    steps: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"ran": 0})  # runs begun
    examples: int = 0  # at most this many runs begun

    def stop_if_out_of_time(self) -> None:
        """The budget is spent and no failure is being replayed: end the whole fuzz run
        (`OutOfTime`), so hypothesis draws no further steps or runs."""
        if self.budget.spent() and not self.ledger.failures:
            raise OutOfTime

    def stop_if_enough(self) -> None:
        """`examples` runs have begun and no failure is being replayed: end (`Enough`)."""
        if self.counts["ran"] >= self.examples and not self.ledger.failures:
            raise Enough

    def has(self, service: str) -> bool:
        """Worth calling: its breaker closed, and in the profile (search_proxy only with
        the global_worker it forwards to: in ecom that one is external)."""
        if not self.ledger.closed(service) or self.target.url(service) is None:
            return False
        if service in ("controller", "fake_cell"):
            return True
        return self.target.serving(service) and (
            service != "search_proxy" or self.target.serving("global_worker"))

    def send(self, service: str, method: str, path: str, body: Any = None, *,
             expect: tuple[int, ...] = (200,), headers: dict[str, str] | None = None) -> Outcome:
        answer = self.target.at(service, method, path, body, headers=headers)
        if self.ledger.record(service, answer):
            raise Infrastructure(answer.text())
        if answer.status_code not in expect:
            self.ledger.fail(service, answer.text(), f"expected {'/'.join(map(str, expect))}")
            raise AssertionError(f"{answer.text()} (expected {'/'.join(map(str, expect))})")
        return answer

    def wrong(self, service: str, call: str, why: str) -> AssertionError:
        self.ledger.fail(service, call, why)
        return AssertionError(f"{call}: {why}")


def step(service: str) -> Callable[[F], F]:
    """A rule's body: ends the run once the budget is spent (unless a failure is being
    replayed), a no-op while the service's breaker is open; infrastructure errors end
    it quietly."""
    def wrap(fn: F) -> F:
        def body(self: FuzzMachine, *args: Any, **kwargs: Any) -> None:
            run = self.run
            run.stop_if_out_of_time()
            if not run.has(service):
                return
            run.steps += 1
            try:
                fn(self, *args, **kwargs)
            except Infrastructure:
                self.uncertain.update(self.indexes)
        body.__name__, body.__doc__ = fn.__name__, fn.__doc__
        # Not a hypothesis precondition: a breaker opening mid-run would make one flaky.
        return body  # type: ignore[return-value]
    return wrap


class FuzzMachine(RuleBasedStateMachine):
    run: Run  # set on the subclass made per run

    def __init__(self) -> None:
        super().__init__()
        self.run.stop_if_out_of_time()  # a run due after the deadline is left out
        self.run.stop_if_enough()
        self.run.counts["ran"] += 1
        self.indexes: dict[str, dict[str, dict[str, Any]]] = {}  # name -> id -> document
        self.deleted: dict[str, set[str]] = {}  # name -> ids deleted (never found again)
        self.terms: dict[tuple[str, str], str] = {}  # (index, id) -> its unique term
        self.pins: dict[tuple[str, str], str] = {}  # (index, rule id) -> pinned id
        self.uncertain: set[str] = set()
        self.gone: list[str] = []
        self.strays: list[str] = []

    def _pick(self, pick: int) -> str | None:
        names = sorted(self.indexes)
        return names[pick % len(names)] if names else None

    @initialize()
    def first_index(self) -> None:
        """Every run starts with an index, so the document rules have somewhere to write
        (create_index checks the breaker and the budget itself)."""
        self.create_index(1)

    @rule(pick=picks)
    @step("controller")
    def create_index(self, pick: int) -> None:
        if len(self.indexes) >= 3 and pick % 2:  # sometimes a name that exists: 409
            name = self._pick(pick) or ""
            self.run.send("controller", "POST", "/api/v2/indexes", {"indexName": name},
                          expect=(409,))
            return
        name = f"{self.run.prefix}-{next(self.run.serial)}"
        self.strays.append(name)  # made or not if the answer is lost: dropped at teardown
        self.run.send("controller", "POST", "/api/v2/indexes", {"indexName": name},
                      expect=(201,))
        self.indexes[name], self.deleted[name] = {}, set()  # only once it surely exists

    @rule(pick=picks)
    @step("controller")
    def delete_index(self, pick: int) -> None:
        name = self._pick(pick)
        if name is None:
            return
        self.indexes.pop(name)
        self.gone.append(name)
        self.uncertain.add(name)  # until the answer says it is gone
        self.run.send("controller", "DELETE", "/api/v2/indexes/" + seg(name))
        self.uncertain.discard(name)
        again = self.run.send("fake_cell", "POST", f"/indexes/{seg(name)}/search", {"q": ""},
                              expect=(200, 404))
        if again.status_code != 404:
            raise self.run.wrong("fake_cell", again.text(), "a deleted index still answers")

    @rule(pick=picks, n=st.integers(1, 4), text=texts)
    @step("fake_cell")
    def add_documents(self, pick: int, n: int, text: str) -> None:
        name = self._pick(pick)
        if name is None:
            return
        docs: list[dict[str, Any]] = []
        for _ in range(n):
            doc_id, word = f"d{next(self.run.serial)}", f"hpf{secrets.token_hex(5)}"
            docs.append({"_id": doc_id, "text": f"{text} {word}", "n": pick % 7})
            self.terms[(name, doc_id)] = word
        self.indexes[name].update({d["_id"]: d for d in docs})
        self.run.send("fake_cell", "POST", f"/indexes/{seg(name)}/documents", {"documents": docs})

    @rule(pick=picks)
    @step("fake_cell")
    def delete_document(self, pick: int) -> None:
        name = self._pick(pick)
        if name is None or not self.indexes[name]:
            return
        doc_id = sorted(self.indexes[name])[pick % len(self.indexes[name])]
        del self.indexes[name][doc_id]
        self.deleted[name].add(doc_id)
        self.run.send("fake_cell", "DELETE", f"/indexes/{seg(name)}/documents/{seg(doc_id)}")

    @rule(pick=picks, via=st.sampled_from(["fake_cell", "search_proxy"]))
    @step("fake_cell")
    def search_a_term(self, pick: int, via: str) -> None:
        """A document's unique term finds exactly it; a deleted one's finds nothing."""
        name = self._pick(pick)
        if name is None or name in self.uncertain or not self.run.has(via):
            return
        known = sorted(self.indexes[name]) + sorted(self.deleted[name])
        if not known:
            return
        doc_id = known[pick % len(known)]
        answer = self.run.send(via, "POST", f"/indexes/{seg(name)}/search",
                               {"q": self.terms[(name, doc_id)], "limit": 10})
        ids = [h.get("_id") for h in (answer.body or {}).get("hits", [])]
        want = [doc_id] if doc_id in self.indexes[name] else []
        if ids != want:
            raise self.run.wrong(via, answer.text(), f"hits {ids!r}, the model says {want!r}")

    @rule(pick=picks)
    @step("controller")
    def count_documents(self, pick: int) -> None:
        name = self._pick(pick)
        if name is None or name in self.uncertain:
            return
        answer = self.run.send("controller", "GET", "/api/v2/indexes/" + seg(name))
        count = (answer.body or {}).get("numberOfDocuments")
        if count != len(self.indexes[name]):
            raise self.run.wrong("controller", answer.text(),
                                 f"numberOfDocuments {count!r}, the model has "
                                 f"{len(self.indexes[name])}")

    @rule()
    @step("controller")
    def list_indexes(self) -> None:
        answer = self.run.send("controller", "GET", "/api/v2/indexes")
        mine = {ix.get("indexName") for ix in (answer.body or {}).get("results", [])
                if str(ix.get("indexName", "")).startswith(self.run.prefix)}
        if not set(self.indexes) - self.uncertain <= mine or mine & set(self.gone) - self.uncertain:
            raise self.run.wrong("controller", answer.text(),
                                 f"lists {sorted(mine)!r}, the model has {sorted(self.indexes)!r}")

    @rule()
    @step("fake_cell")
    def account_view(self) -> None:
        """The key's account, as the cell and the controller see it, lists what we made."""
        me = self.run.send("fake_cell", "GET", "/account").body or {}
        account = str(me.get("accountId") or "")
        if not account:
            raise self.run.wrong("fake_cell", "GET /account", f"no accountId in {me!r}")
        if self.run.has("controller"):
            seen = self.run.send("controller", "GET", "/api/v2/accounts/" + seg(account))
            if (seen.body or {}).get("accountId") != account:
                raise self.run.wrong("controller", seen.text(), f"not account {account}")
        listed = self.run.send("fake_cell", "GET", f"/accounts/{seg(account)}/indexes").body
        names = {str(ix.get("indexName")) for ix in (listed or {}).get("results", [])}
        missing = set(self.indexes) - self.uncertain - names
        if missing:
            raise self.run.wrong("fake_cell", f"GET /accounts/{account}/indexes",
                                 f"does not list {sorted(missing)!r}")

    @rule(bad=st.sampled_from([{"documents": "x"}, {"documents": [1]}, {}, [],
                               {"documents": [{"_id": ""}]}, {"documents": [{"_x": 1}]}]))
    @step("fake_cell")
    def bad_documents(self, bad: Any) -> None:
        """Bad input is a 400 naming the problem, never a 500."""
        name = self._pick(0) or f"{self.run.prefix}-none"
        self.run.send("fake_cell", "POST", f"/indexes/{seg(name)}/documents", bad,
                      expect=(400, 404))

    @rule(pick=picks, query=texts)
    @step("admin_server")
    def pin_rule(self, pick: int, query: str) -> None:
        name = self._pick(pick)
        if name is None or not self.indexes[name]:
            return
        doc_id = sorted(self.indexes[name])[pick % len(self.indexes[name])]
        rule_id = f"r{pick % 3}"
        path = f"/api/v1/indexes/{seg(name)}/merchandising/rules/{rule_id}"
        auth = {"Authorization": f"Bearer {self.run.target.key}"}
        self.pins[(name, rule_id)] = doc_id
        body = {"action": "pin", "documentId": doc_id, "query": query or "q"}
        self.run.send("admin_server", "PUT", path, body, expect=(200, 201), headers=auth)
        got = self.run.send("admin_server", "GET", path, headers=auth).body or {}
        if got.get("documentId") != doc_id:
            raise self.run.wrong("admin_server", f"GET {path}", f"stored {got!r}, put {body!r}")

    @rule(service=st.sampled_from(SERVICES))
    def health(self, service: str) -> None:
        run = self.run
        run.stop_if_out_of_time()
        if not run.has(service):
            return
        if run.ledger.record(service, run.target.at(service, "GET", "/healthz", headers={})):
            return

    @invariant()
    def breakers_named(self) -> None:
        """Nothing to check between steps; present so an all-skipped run still runs."""

    def teardown(self) -> None:
        for name, rule_id in self.pins:  # first: a key reaches only indexes that exist
            self.run.target.at("admin_server", "DELETE",
                               f"/api/v1/indexes/{seg(name)}/merchandising/rules/{rule_id}",
                               headers={"Authorization": f"Bearer {self.run.target.key}"})
        for name in {*self.indexes, *self.strays} - (set(self.gone) - self.uncertain):
            self.run.target.drop_index(name)


def run_fuzz(target: Target, *, examples: int, steps: int, budget: Budget, seed: int,
             threshold: int) -> tuple[Result, Ledger, int, int]:
    """One fuzz run: its outcome (`skipped_for_time`: the machine's runs left out when
    the budget ran out), the ledger (codes, breakers, failures), steps taken and the
    machine's runs begun."""
    run = Run(target, Ledger(threshold=threshold), budget, examples=examples)
    machine = hypothesis.seed(seed)(type("FuzzMachine", (FuzzMachine,), {"run": run}))
    chosen = probe_settings(examples, shrink=False, stateful_step_count=steps)

    def test() -> None:
        run_state_machine_as_test(machine, settings=chosen)

    result = run_test("fuzz", test, run.counts, examples)
    result.examples = run.steps
    return result, run.ledger, run.steps, run.counts["ran"]
