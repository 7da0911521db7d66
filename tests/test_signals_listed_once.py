"""The daemon answers `signal.valid_signals()` from one call while its loop runs
(shutdown_signals.signals_listed_once): asyncio asks it at every add and remove of a
signal handler, 45 of each."""

from __future__ import annotations

import asyncio
import signal

import pytest

from hippo_tasks.daemon.shutdown_signals import SHUTDOWN_SIGNALS, signals_listed_once


def test_the_answer_is_the_real_one_and_each_caller_gets_its_own_set() -> None:
    real = signal.valid_signals()
    with signals_listed_once():
        first = signal.valid_signals()
        assert first == real
        first.clear()  # a caller's change stays its own
        assert signal.valid_signals() == real
    assert signal.valid_signals() == real


def test_asyncio_adds_and_removes_every_shutdown_handler_with_one_real_listing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = signal.valid_signals

    def counted() -> set[signal.Signals]:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(signal, "valid_signals", counted)

    async def take_and_give_back() -> None:
        loop = asyncio.get_running_loop()
        for number in SHUTDOWN_SIGNALS.values():
            loop.add_signal_handler(number, lambda: None)
        for number in SHUTDOWN_SIGNALS.values():
            assert loop.remove_signal_handler(number)

    with signals_listed_once():
        asyncio.run(take_and_give_back())
    assert calls == 1
    assert signal.valid_signals is counted  # put back as it was
    asyncio.run(take_and_give_back())  # without it, asyncio asks at every handler
    assert calls > len(SHUTDOWN_SIGNALS)


def test_put_back_when_the_engine_raises() -> None:
    real = signal.valid_signals
    with pytest.raises(RuntimeError), signals_listed_once():
        raise RuntimeError("the engine failed")
    assert signal.valid_signals is real
