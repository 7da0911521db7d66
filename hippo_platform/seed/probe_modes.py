"""`--full` and `--fuzz`: run the mode, print its report, say whether it passed.

hypothesis is imported only here, when a mode asks for it, so plain `probes` (health
and the data path) runs on a Python without it; a missing hypothesis is one sentence
naming what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hippo_platform.seed.endpoints import StackView

Say = Callable[[str], None]
NO_HYPOTHESIS = ("probes --full and --fuzz need hypothesis, which is not installed for this "
                 "Python: pip install 'hippodrome[probes]' (or `pip install hypothesis`)")


def have_hypothesis() -> bool:
    return importlib.util.find_spec("hypothesis") is not None


def keep_files_in_state_folder(root: Path) -> None:
    """hypothesis writes caches to `.hypothesis/` in the working folder (the project
    root here); they belong with the stack's other state, under `.hippodrome/`."""
    import os

    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        from hypothesis.configuration import set_hypothesis_home_dir

        set_hypothesis_home_dir(root / ".hippodrome" / "hypothesis")


def full(root: Path, view: StackView, *, examples: int, deadline_s: float, seed: int,
         say: Say) -> tuple[bool, list[dict[str, Any]]]:
    from hippo_platform.seed import probe_props
    from hippo_platform.seed.probe_runner import FAIL, Budget
    from hippo_platform.seed.probe_target import TargetError, make_target

    keep_files_in_state_folder(root)
    say(f"properties (hypothesis, seed {seed}, up to {examples} example(s) each, "
        f"{deadline_s:g} s in all)")
    try:
        target = make_target(root, view)
        results = probe_props.run_all(target, examples=examples,
                                      budget=Budget(deadline_s), seed=seed)
    except TargetError as exc:
        say(f"  [FAIL] {'properties':<23}{exc}")
        return False, [{"name": "properties", "status": "FAIL", "text": str(exc)}]
    for result in results:
        tag = {"PASS": "[OK]", "FAIL": "[FAIL]", "SKIP": "[SKIP]"}[result.status]
        say(f"  {tag:<7}{result.name:<23}{result.text:<52}  {result.seconds:6.2f} s")
        for line in result.falsifying:
            for part in line.splitlines():
                say(f"           {part}")
    failed = sum(r.status == FAIL for r in results)
    passed = sum(r.status == "PASS" for r in results)
    skipped = len(results) - failed - passed
    say(f"properties: {passed} passed, {failed} failed, {skipped} skipped"
        + (f" (reproduce with --seed {seed})" if failed else ""))
    return failed == 0, [r.as_json() for r in results]


def fuzz(root: Path, view: StackView, *, examples: int, steps: int, deadline_s: float,
         seed: int, breaker: int, say: Say) -> tuple[bool, dict[str, Any]]:
    from hippo_platform.seed.probe_fuzz import run_fuzz
    from hippo_platform.seed.probe_runner import FAIL, Budget
    from hippo_platform.seed.probe_target import TargetError, make_target

    keep_files_in_state_folder(root)
    say(f"fuzz (hypothesis state machine, seed {seed}, up to {examples} run(s) of "
        f"{steps} step(s), {deadline_s:g} s, breaker after {breaker} infrastructure errors)")
    try:
        target = make_target(root, view)
    except TargetError as exc:
        say(f"  [FAIL] {'fuzz':<23}{exc}")
        return False, {"status": "FAIL", "text": str(exc)}
    result, ledger, steps_taken, runs = run_fuzz(target, examples=examples, steps=steps,
                                                 budget=Budget(deadline_s), seed=seed,
                                                 threshold=breaker)
    say("  error codes per service (calls; infra = infrastructure errors, forgiven):")
    for row in ledger.table():
        say(row)
    for service, why in sorted(ledger.tripped.items()):
        say(f"  [WARN] breaker open    {service}: {why}; its steps were skipped")
    real = bool(ledger.failures) or result.status == FAIL
    for failure in ledger.failures[:10]:
        say(f"  [FAIL] {failure.service:<23}{failure.call}: {failure.why}")
    if result.status == FAIL:
        if not ledger.failures:
            say(f"  [FAIL] {'fuzz':<23}{result.text}")
        for line in result.falsifying:
            for part in line.splitlines():
                say(f"           {part}")
    infra = sum(ledger.infrastructure.values())
    left_out = (f", {result.skipped_for_time} run(s) left out when the time budget ran out"
                if result.skipped_for_time else "")
    say(f"fuzz: {steps_taken} step(s) in {runs} run(s), {len(ledger.failures)} real "
        f"failure(s), {infra} infrastructure error(s), {len(ledger.tripped)} breaker(s) open"
        + left_out + (f" (reproduce with --seed {seed})" if real else ""))
    return not real, {"status": "FAIL" if real else "PASS", "steps": steps_taken,
                      "runs": runs, "skipped_for_time": result.skipped_for_time,
                      **ledger.as_json()}
