"""Following one table's DynamoDB stream on moto, one thread per table.

Where it starts, and why: at LATEST, unless a checkpoint says where this same stream
was left. moto keeps every stream record for as long as it runs, so starting from the
stream's beginning (TRIM_HORIZON) would replay, on every start of event_pipe, changes
the exporters already saw, and the bus would get them twice; starting at LATEST means
"changes from now on", what a freshly created pipe does in AWS. Two exceptions, both
to lose nothing: a checkpoint of the same stream (a restart of event_pipe alone)
resumes right after the last record relayed; and a stream created less than
`fresh_stream` seconds ago (the one aws_provision just made for this `up`) is read
from its start, since every record in it is this stack's and the seed job may already
be writing settings before event_pipe is ready. A stream that changes under a running
pipe (the table was re-created, moto restarted) is new, so it too is followed from its
start. /healthz fails until every table has its starting position: a write made after
the pipe reports ready is never missed.

Polling: moto has no push; every GetRecords is a poll, and moto keeps every shard
iterator it ever issued (about 2.3 KB each, never freed). So the pipe polls every
`fast` seconds while changes are flowing and for `idle_after` seconds after the last
one, then every `idle` seconds: a change still arrives within about `idle` + one
delivery, and an idle stack does not grow moto by 80 MB an hour.

Failures: moto down or answering errors is retried with backoff (0.2 s doubling to 5 s)
for as long as it takes, keeping the position; the first failure and the recovery are
logged, not every attempt. An iterator moto no longer knows is replaced by one after
the last relayed sequence number.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NamedTuple

from hippo_platform.services.common.aws_lite import AwsClient, AwsError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.event_pipe.delivery import (
    WEBHOOK_BACKOFF,
    Backoff,
    Bus,
    Outcome,
    Webhook,
    attempt,
)
from hippo_platform.services.event_pipe.records import Source, epoch_seconds, key_text, to_event
from hippo_platform.services.event_pipe.stats import Checkpoints, PipeStats, now_iso

ERROR_BACKOFF = Backoff(attempts=1_000_000, first=0.2, cap=5.0)
REPEAT_LOG_S = 30.0
RECORDS_PER_CALL = 1000


class Timing(NamedTuple):
    fast: float = 0.1
    idle: float = 0.5
    idle_after: float = 30.0
    fresh_stream: float = 60.0  # a stream younger than this at start-up is read from its start
    stream_check: float = 5.0  # with nothing read, this often: does the table have a new one?


class Cursor:
    __slots__ = ("shard_id", "iterator", "last_seq")

    def __init__(self, shard_id: str, iterator: str | None, last_seq: str | None = None) -> None:
        self.shard_id = shard_id
        self.iterator = iterator
        self.last_seq = last_seq


class StreamGone(Exception):
    """The table, its stream or the iterator is not there any more: find it again."""


class Follower:
    def __init__(
        self,
        source: Source,
        aws: AwsClient,
        deliver_to: tuple[Bus | None, Webhook | None],
        stats: PipeStats,
        checkpoints: Checkpoints,
        *,
        timing: Timing | None = None,
        delivery_backoff: Backoff | None = None,
        webhook_backoff: Backoff | None = None,
    ) -> None:
        self.source = source
        self.aws = aws
        self.bus, self.webhook = deliver_to
        self.stats = stats
        self.checkpoints = checkpoints
        self.timing = timing or Timing()
        self.delivery_backoff = delivery_backoff or Backoff()
        self.webhook_backoff = webhook_backoff or WEBHOOK_BACKOFF
        self.stop = threading.Event()
        self.stream_arn: str | None = None
        self.cursors: dict[str, Cursor] = {}
        self.done_shards: set[str] = set()
        self.followed: set[str] = set()  # every shard of the current stream we have read
        self.resume: dict[str, str] = {}  # last relayed seq per shard, kept when lost
        self.last_activity = time.monotonic()
        self._stream_checked = time.monotonic()
        self.thread = threading.Thread(target=self.run, name=f"follow-{source.table}",
                                       daemon=True)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        delays = ERROR_BACKOFF.delays()
        failing_since: float | None = None
        last_logged = ("", 0.0)
        while not self.stop.is_set():
            try:
                if not self.cursors:
                    self.position()
                got = self.poll_once()
                if not got:
                    self.check_stream()
            except Exception as exc:
                text = self.describe_failure(exc)
                self.stats.error(self.source.table, text)
                self.stats.update(self.source.table, retrying=True)
                now = time.monotonic()
                if text != last_logged[0] or now - last_logged[1] > REPEAT_LOG_S:
                    log_error(f"event_pipe: {self.source.table}: {text.rstrip('.')}; retrying")
                    last_logged = (text, now)
                failing_since = failing_since or now
                self.stop.wait(next(delays))
                continue
            if failing_since is not None:
                log_line(f"event_pipe: {self.source.table}: recovered after "
                         f"{time.monotonic() - failing_since:.1f}s")
                failing_since, last_logged = None, ("", 0.0)
                delays = ERROR_BACKOFF.delays()
                self.stats.update(self.source.table, retrying=False)
            self.stop.wait(self.interval(got))

    def interval(self, got: int) -> float:
        now = time.monotonic()
        if got:
            self.last_activity = now
        hot = now - self.last_activity < self.timing.idle_after
        self.stats.update(self.source.table, polling="fast" if hot else "idle")
        return self.timing.fast if hot else self.timing.idle

    def describe_failure(self, exc: BaseException) -> str:
        if isinstance(exc, StreamGone):
            return str(exc)
        if not isinstance(exc, AwsError):  # an answer missing what it always has
            return f"unexpected failure: {type(exc).__name__}: {exc}"
        if exc.code in ("ResourceNotFoundException", "ExpiredIteratorException",
                        "TrimmedDataAccessException", "InternalFailure", "InternalServerError",
                        "500"):
            self.forget_position()
        return exc.sentence

    def forget_position(self) -> None:
        """Drop the iterators but remember the sequence numbers: `position` resumes there."""
        for cursor in self.cursors.values():
            if cursor.last_seq:
                self.resume[cursor.shard_id] = cursor.last_seq
        self.cursors.clear()

    # -- where to read --------------------------------------------------------------

    def check_stream(self) -> None:
        """A table deleted and made again (`hd restart --service aws_provision`, the
        troubleshooting guide's own fix) has a new stream, while the old one's iterators
        go on answering nothing: the pipe read a dead stream for good, and every change
        after it was lost with all health checks green. While nothing comes, the table
        is asked now and then which stream it has; a new one is followed from its start."""
        now = time.monotonic()
        if now - self._stream_checked < self.timing.stream_check or self.stream_arn is None:
            return
        self._stream_checked = now
        answer = self.aws.call("dynamodb", "DescribeTable", {"TableName": self.source.table})
        arn = answer["Table"].get("LatestStreamArn")
        if arn and arn != self.stream_arn:
            self.forget_position()  # position() finds the new stream and reads it whole

    def position(self) -> None:
        answer = self.aws.call("dynamodb", "DescribeTable", {"TableName": self.source.table})
        table = answer["Table"]
        spec = table.get("StreamSpecification") or {}
        arn = table.get("LatestStreamArn")
        if not arn or not spec.get("StreamEnabled"):
            raise StreamGone(f"table {self.source.table} has no enabled stream (provisioning "
                             "makes one with NEW_AND_OLD_IMAGES)")
        shards, created = self.describe_stream(arn)
        first_join = self.stream_arn is None
        same_stream = arn == self.stream_arn
        if first_join:
            saved = self.checkpoints.shards(self.source.table, arn)
            age = time.time() - created if created is not None else None
            fresh = age is not None and age < self.timing.fresh_stream
            how = "checkpoint" if saved else "TRIM_HORIZON" if fresh else "LATEST"
        elif same_stream:
            saved, how = dict(self.resume), "resumed"
        else:
            log_line(f"event_pipe: {self.source.table}: its stream changed (table re-created or "
                     f"moto restarted): following {arn} from its start")
            saved, how = {}, "TRIM_HORIZON"
            self.done_shards.clear()
            self.followed.clear()
        self.stream_arn = arn
        cursors = {}
        for shard in shards:
            shard_id = shard["ShardId"]
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            if shard_id in self.done_shards:
                continue
            if shard_id in saved:
                it = self.iterator(arn, shard_id, "AFTER_SEQUENCE_NUMBER", saved[shard_id])
            elif how == "TRIM_HORIZON" or (how == "resumed" and shard_id not in self.followed):
                it = self.iterator(arn, shard_id, "TRIM_HORIZON")  # all of it is new to us
            elif closed:
                self.done_shards.add(shard_id)  # history from before we joined
                continue
            else:
                if how == "resumed":
                    log_error(f"event_pipe: {self.source.table}: shard {shard_id} had relayed "
                              "nothing yet when its iterator was lost; rejoining at LATEST, so "
                              "changes made in between may be missed")
                it = self.iterator(arn, shard_id, "LATEST")
            cursors[shard_id] = Cursor(shard_id, it, saved.get(shard_id))
        self.cursors = cursors
        self.followed.update(cursors)
        self.resume.clear()
        self.stats.update(self.source.table, stream_arn=arn, positioned=True, start=how)
        if first_join or how != "resumed":
            log_line(f"event_pipe: following {self.source.table} ({len(cursors)} shard(s), "
                     f"from {how}) -> {self.source.detail_type_prefix}.* on {self.source.bus}")

    def describe_stream(self, arn: str) -> tuple[list[dict[str, Any]], float | None]:
        """Every shard, and when the stream was created (epoch seconds, if known)."""
        shards: list[dict[str, Any]] = []
        body: dict[str, str] = {"StreamArn": arn}
        created: float | None = None
        while True:
            desc = self.aws.call("dynamodbstreams", "DescribeStream", body)["StreamDescription"]
            created = epoch_seconds(desc.get("CreationRequestDateTime")) or created
            shards.extend(desc.get("Shards") or [])
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return shards, created
            body = {"StreamArn": arn, "ExclusiveStartShardId": last}

    def iterator(self, arn: str, shard_id: str, kind: str, seq: str | None = None) -> str:
        body = {"StreamArn": arn, "ShardId": shard_id, "ShardIteratorType": kind}
        if seq:
            body["SequenceNumber"] = seq
        return str(self.aws.call("dynamodbstreams", "GetShardIterator", body)["ShardIterator"])

    # -- reading and relaying -------------------------------------------------------

    def poll_once(self) -> int:
        got = 0
        for cursor in list(self.cursors.values()):
            if self.stop.is_set():
                break
            got += self.read_shard(cursor)
        return got

    def read_shard(self, cursor: Cursor) -> int:
        assert self.stream_arn is not None and cursor.iterator is not None
        answer = self.aws.call("dynamodbstreams", "GetRecords",
                               {"ShardIterator": cursor.iterator, "Limit": RECORDS_PER_CALL})
        records = answer.get("Records") or []
        done = 0
        for record in records:
            if self.stop.is_set() or not self.relay(record):
                break  # stopping: what is left is re-read after a restart (checkpoint)
            cursor.last_seq = str(record["dynamodb"]["SequenceNumber"])
            done += 1
        if done:
            self.save_checkpoint()
        if done < len(records):
            return done
        nxt = answer.get("NextShardIterator")
        if nxt:
            cursor.iterator = str(nxt)
        else:
            self.shard_closed(cursor)
        return len(records)

    def shard_closed(self, cursor: Cursor) -> None:
        """A split or a rotated shard: follow its children from their start."""
        assert self.stream_arn is not None
        self.cursors.pop(cursor.shard_id, None)
        self.done_shards.add(cursor.shard_id)
        for shard in self.describe_stream(self.stream_arn)[0]:
            shard_id = shard["ShardId"]
            if shard_id not in self.cursors and shard_id not in self.done_shards:
                it = self.iterator(self.stream_arn, shard_id, "TRIM_HORIZON")
                self.cursors[shard_id] = Cursor(shard_id, it)
                self.followed.add(shard_id)
                log_line(f"event_pipe: {self.source.table}: shard {cursor.shard_id} closed; "
                         f"following {shard_id}")

    def save_checkpoint(self) -> None:
        assert self.stream_arn is not None
        shards = {c.shard_id: c.last_seq for c in self.cursors.values() if c.last_seq}
        try:
            self.checkpoints.save(self.source.table, self.stream_arn, shards)
        except OSError as exc:
            log_error(f"event_pipe: could not save the checkpoint: {exc}")

    def relay(self, record: dict[str, Any]) -> bool:
        """Deliver one record; False when a stop cut a delivery short (not relayed yet)."""
        assert self.stream_arn is not None
        started = time.perf_counter()
        event = to_event(record, self.source, self.stream_arn)
        seq = record.get("dynamodb", {}).get("SequenceNumber")
        table = self.source.table
        self.stats.bump(table, records=1)
        outcomes: list[Outcome] = []
        if self.webhook is not None:  # first: it is what the exporters wait on
            hook = self.webhook
            outcomes.append(attempt("webhook", lambda: hook.post(event),
                                    self.delivery_backoff, self.stop, self.webhook_backoff))
        if self.bus is not None:
            bus = self.bus
            outcomes.append(attempt("bus", lambda: bus.put(event, self.source.bus),
                                    self.delivery_backoff, self.stop))
        ok = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        what = f"{event['detail-type']} {key_text(event['detail']['keys'])} seq {seq}"
        if failed and self.stop.is_set():
            log_line(f"event_pipe: stopping before {what} was delivered everywhere; the "
                     "checkpoint is before it, so the next start relays it again")
            return False
        self.stats.bump(table, relayed=int(not failed), skipped=len(failed),
                        bus_put=sum(o.destination == "bus" for o in ok),
                        webhook_posted=sum(o.destination == "webhook" for o in ok))
        self.stats.update(table, last_record_at=now_iso(), last_sequence=seq)
        ms = (time.perf_counter() - started) * 1000
        log_line(f"event_pipe: relayed {what}: " + "; ".join(o.text for o in ok)
                 + f" ({ms:.0f}ms)")
        for o in failed:
            text = f"SKIPPED {o.destination} delivery of {what} (event id {event['id']}): {o.text}"
            self.stats.error(table, text)
            log_error(f"event_pipe: {text}")
        return True
