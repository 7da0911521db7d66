"""The `hd` command (console script and PEX entry point): the same tasks as `invoke`.

The commands people repeat (`up`, `status`, `start`, `stop`, `restart`, `logs`, `down`
and their `control.` names, `--version`) take a fast path: their flags are read here and
the very same task function is called, without importing invoke, which costs about
0.17 s before any task runs. Anything else on the line (short flags bundled,
`--help`, a second task, invoke's core options, an invoke config file or `INVOKE_*`
variable that could change parsing) goes to invoke's Program, exactly as before.
`HIPPODROME_FAST_CLI=0` sends everything to invoke.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hippo_tasks import __version__
from hippo_tasks.errors import UsageError
from hippo_tasks.out_of_memory import OUT_OF_MEMORY, is_out_of_memory
from hippo_tasks.tasks.output import (
    EXIT_PIPE_CLOSED,
    exit_code_for,
    exit_status,
    quiet_stdout,
)

KINDS: dict[str, type] = {"json": bool, "force": bool, "follow": bool, "cascade": bool,
                          "timestamps": bool, "lines": str, "service": str, "project-root": str,
                          "profile": str, "cell": str, "table-prefix": str, "only": str,
                          "port-offset": str, "show": str, "enable-events": bool,
                          "seed": bool, "detach": bool, "yes": bool, "quiet": bool,
                          "record": bool}
"""Each fast-path flag's type, as invoke infers it from the task's default value."""
SHORT: dict[str, str] = {"json": "j", "force": "f", "follow": "f", "lines": "l",
                         "service": "s", "project-root": "p", "detach": "d", "cell": "c",
                         "only": "o", "table-prefix": "t", "yes": "y", "quiet": "q"}
"""Their one-letter forms, as tasks/flags.py gives them (others are long only)."""
REPEATED: dict[str, frozenset[str]] = {"logs": frozenset({"service"})}
"""Per task, the flags invoke takes again and again into a list (`iterable`)."""
NEGATABLE = frozenset({"seed", "record"})
"""Flags whose default is on: invoke reads `--no-seed` as seed=False, and so do we."""

HOT: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "up": ("lifecycle", "up", ("profile", "cell", "table-prefix", "project-root",
                               "enable-events", "seed", "only", "port-offset", "detach", "yes",
                               "quiet", "show", "record")),
    "status": ("actions", "status", ("json", "project-root")),
    "start": ("actions", "start", ("service", "project-root")),
    "stop": ("actions", "stop", ("service", "project-root")),
    "restart": ("actions", "restart", ("service", "project-root", "cascade")),
    "down": ("lifecycle", "down", ("force", "project-root")),
    "logs": ("logs", "logs", ("service", "follow", "lines", "project-root", "timestamps")),
}
"""Task name -> (module under hippo_tasks.tasks, function, its long flags).
tests/test_cli_imports.py holds these tables to invoke's own parser."""
HOT.update({f"control.{name}": HOT[name] for name in ("status", "start", "stop", "restart")})

RUN_ONLY = ("command-timeout", "dry", "echo", "hide", "prompt-for-sudo-password", "pty",
            "warn-only")
"""invoke's core options for `c.run` (shell commands), which no Hippodrome task uses."""

INVOKE_CONFIG_FILES = tuple(f"{prefix}invoke.{ext}" for prefix in ("/etc/", "~/.")
                            for ext in ("yaml", "yml", "json", "py"))


def kind_of(task: str, flag: str) -> type:
    return list if flag in REPEATED.get(task, ()) else KINDS[flag]


def kwarg_for(flag: str) -> str:
    """The task parameter behind a flag: `--json` is `json_`, `--project-root` is
    `project_root` (invoke's own renaming)."""
    name = flag.replace("-", "_")
    return name + "_" if name == "json" else name


def parse_hot(argv: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """`[task, flags...]` as invoke would read it, or None when this is not a line
    the fast path is sure to read the same way."""
    if not argv or argv[0] not in HOT:
        return None
    flags = HOT[argv[0]][2]
    names = {f"--{f}": f for f in flags} | {f"-{SHORT[f]}": f for f in flags if f in SHORT}
    negated = {f"--no-{f}": f for f in flags if f in NEGATABLE}
    kwargs: dict[str, Any] = {}
    words = list(argv[1:])
    while words:
        word = words.pop(0)
        word, eq, inline = word.partition("=")
        if word in negated and not eq and kwarg_for(negated[word]) not in kwargs:
            kwargs[kwarg_for(negated[word])] = False
            continue
        flag = names.get(word)
        repeated = flag is not None and kind_of(argv[0], flag) is list
        if flag is None or (kwarg_for(flag) in kwargs and not repeated) or \
                (eq and not word.startswith("--")):
            return None
        if KINDS[flag] is bool:
            if eq:
                return None
            kwargs[kwarg_for(flag)] = True
            continue
        if eq:
            value = inline
        elif words and not words[0].startswith("-"):
            value = words.pop(0)
        elif repeated:  # invoke's list flag takes a bare `--service` for none at all
            # (every service's logs), where any other flag is refused so
            raise UsageError(f"--{flag} needs a value")
        else:
            return None
        if repeated:
            kwargs.setdefault(kwarg_for(flag), []).append(value)
            continue
        kwargs[kwarg_for(flag)] = value  # no int flags: each task reads its own numbers
    return argv[0], kwargs


def fast_path_allowed(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """No setting that could make invoke read the line differently."""
    if environ.get("HIPPODROME_FAST_CLI", "1") == "0":
        return False
    if any(key.startswith("INVOKE_") for key in environ):
        return False
    return not any(os.path.exists(os.path.expanduser(p)) for p in INVOKE_CONFIG_FILES)


def run_fast(argv: Sequence[str], fast: bool | None = None) -> int | None:
    """Run a hot command without invoke; its exit status, or None to hand the line to
    invoke. `fast`: whether invoke's settings allow it (default: look)."""
    if list(argv) in (["--version"], ["-V"]):
        print(f"hd {__version__}")  # invoke's Program.print_version
        return 0
    try:
        parsed = parse_hot(argv)
    except UsageError as exc:
        return exit_status(_raise, exc)
    if parsed is None or not (fast_path_allowed() if fast is None else fast):
        return None
    from importlib import import_module

    module, function, _ = HOT[parsed[0]]
    declared = getattr(import_module(f"hippo_tasks.tasks.{module}"), function)
    # The body under handles_errors: exit_status maps errors as handles_errors does,
    # returning the code instead of raising invoke's Exit. Tasks ignore their context.
    return exit_status(declared.__wrapped__, None, **parsed[1])


def _raise(exc: BaseException) -> None:
    raise exc


SUBCOMMANDS: dict[str, tuple[str, ...]] = {
    "export": ("k8s",),
    "control": ("status", "start", "stop", "restart", "shutdown"),
    "events": ("validate", "send", "replay"),
}
"""`hd export k8s` is `hd export.k8s`: a collection's task named as two words.
tests/test_cli_edges.py holds this table to the collections invoke is given."""
TOP_TASKS = ("doctor", "down", "e2e", "init", "logs", "mcp", "probes", "restart", "seed",
             "start", "status", "stop", "up", "why")
"""The tasks outside collections (held to invoke's by the same test): `TASK --help`
is rewritten for these and the collections' only, so a mistyped name still gets the
'No idea what' sentence and exit 2."""


def dotted(argv: Sequence[str]) -> list[str]:
    """The line with a leading `COLLECTION TASK` pair joined into invoke's dotted name,
    and `TASK --help` as `--help TASK`: invoke gave a task's positional argument the
    flag (`hd why --help` asked the daemon about a service named '--help'). What
    follows is dropped, as `invoke TASK --help ...` passes it over: after `--help TASK`
    invoke read the task's flags as its own (`hd status --help --project-root .` was
    "No idea what '--project-root' is")."""
    if len(argv) >= 2 and argv[1] in SUBCOMMANDS.get(argv[0], ()):
        argv = [f"{argv[0]}.{argv[1]}", *argv[2:]]
    if len(argv) >= 2 and argv[1] in ("--help", "-h") and _is_task(argv[0]):
        return ["--help", argv[0]]
    return list(argv)


def _is_task(name: str) -> bool:
    group, _, task = name.partition(".")
    return name in TOP_TASKS or task in SUBCOMMANDS.get(group, ())


@contextlib.contextmanager
def _interrupt_noted() -> Iterator[list[bool]]:
    """Python's own Ctrl+C (a KeyboardInterrupt), with a note that it came; the handler
    of before is put back after. A task that handles SIGINT itself installs its own."""
    import signal

    noted: list[bool] = []

    def on_interrupt(signum: int, frame: Any) -> None:
        noted.append(True)
        raise KeyboardInterrupt

    before: Any = None
    # Left as it is where SIGINT is ignored (`hd ... &` from a script) or handled, and
    # off the main thread (a caller in-process): ValueError.
    with contextlib.suppress(ValueError):
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            before = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield noted
    finally:
        if before is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, before)


def stdio_on_devnull() -> None:
    """`hd up --detach <&- >&-`: Python leaves a closed stdin, stdout or stderr as None,
    and the command still runs, its output going nowhere. Opened in order, /dev/null
    takes the closed numbers, so no file opened later (the lock, a log) is given 0-2."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115  # for the process


def text_never_fails() -> None:
    """Print what cannot be encoded as escapes instead of dying mid-output: a lone
    surrogate (`"\\ud800"` is valid JSON) in a recorded event's detail-type ended
    `hd events.replay` with a UnicodeEncodeError traceback, and the lines after it were
    never sent."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        # surrogateescape (a C locale's default) still fails on a surrogate it did not make
        if reconfigure is not None and getattr(stream, "errors", "") in ("strict",
                                                                         "surrogateescape"):
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def cli() -> None:
    """`hd` itself: main(), then out of the process without tearing the interpreter down.

    Freeing every module at exit cost a command ~14 ms after its last line (measured
    from atexit to the parent's wait, with the control modules loaded), time a user
    waits on `hd restart` for nothing: once output is flushed there is nothing left to
    finalise, as files are closed by their `with` and the daemon is its own process.
    With another thread still running (a library's worker, say) the normal exit joins it.
    main() stays a plain function for callers in-process (tests)."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        if not (exc.code is None or isinstance(exc.code, int)):
            raise  # a message to print: Python's own exit does that
        code = exc.code or 0
    finally:
        seed = sys.modules.get("hippo_tasks.daemon.seed")  # planted by entry.py
        if seed is not None:
            seed.drop()  # not handed over: `up` refused or failed
    try:
        for stream in (sys.stdout, sys.stderr):  # never None: main() saw to it
            stream.flush()
    except BrokenPipeError:
        quiet_stdout()
        code = EXIT_PIPE_CLOSED
    except (OSError, ValueError) as exc:  # a full disk under a redirect, a closed stream
        code = code or unwritable(exc)
    if "threading" in sys.modules and sys.modules["threading"].active_count() > 1:
        sys.exit(code)
    os._exit(code)


def main() -> None:
    """Run the program; a reader that closed the pipe ends it quietly (`hd --list | head`)."""
    stdio_on_devnull()
    text_never_fails()
    argv = dotted(sys.argv[1:])
    if argv and argv[0] in SUBCOMMANDS:  # `hd control`: invoke knew no task of that name
        tasks = ", ".join(f"`hd {argv[0]} {t}`" for t in SUBCOMMANDS[argv[0]])
        print(f"hippodrome: '{argv[0]}' needs one of its tasks: {tasks}", file=sys.stderr)
        sys.exit(2)
    try:
        code = run_fast(argv)
        if code is not None:
            sys.stdout.flush()
            if code:
                sys.exit(code)
            return
        try:
            from hippo_tasks.tasks import ns

            program = _program()(namespace=ns, version=__version__, name="hd",
                                 binary="hd", config_class=_config_class())
        except ImportError as exc:  # a module half-removed, built for another Python:
            # a 15-line traceback for every command, `hd doctor` too (adv24 c/7)
            name = exc.name or _failing_module(exc)
            print(f"hippodrome: cannot import {name} ({exc}): this "
                  "installation is broken; reinstall Hippodrome (`pip install "
                  "--force-reinstall` in its environment, or make the venv again). `hd up`, "
                  "`status`, `start`, `stop`, `restart`, `logs` and `down` may still work",
                  file=sys.stderr)
            sys.exit(1)
        try:
            with _interrupt_noted() as interrupted:
                try:
                    program.run([sys.argv[0], *argv])
                except SystemExit as exc:
                    # invoke's Program turns a Ctrl+C met while it parses into exit 1,
                    # with no word (5 of 60 Ctrl+Cs, adv43 V/5)
                    if exc.code == 1 and interrupted:
                        raise KeyboardInterrupt from None
                    raise
        except InvokeConfigError as exc:
            # A file that cannot be read changes nothing invoke would do: the hot
            # commands still run (`hd down` must stop a stack whatever ~/.invoke.yaml
            # holds), with the file said as a warning; the others stop here, exit 2.
            code = run_fast(argv, fast=True)
            print(f"hippodrome: {'warning: ' if code is not None else ''}{exc.message()}",
                  file=sys.stderr)
            code = exit_code_for(exc) if code is None else code
            sys.stdout.flush()
            if code:
                sys.exit(code)
            return
        sys.stdout.flush()
    except (KeyboardInterrupt, OSError, MemoryError, ImportError) as exc:
        # Ctrl+C before a task began, while invoke and the tasks still load (0.1-0.2 s):
        # a KeyboardInterrupt traceback, or exit 1 with no word, as invoke's Program
        # does (adv31 r/3); `hd status > file` on a full disk: a traceback too.
        code = said_end(exc)
        if code is None:
            raise
        sys.exit(code)


def said_end(exc: BaseException) -> int | None:
    """How a command ends on a Ctrl+C (130), a reader that closed the pipe (141) or
    output that cannot be written (120), said on stderr: the exit status, or None for
    any other error. Files Hippodrome writes itself say a full disk as StateDirError;
    what is left to escape this far with these errors is the output."""
    if isinstance(exc, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            print("hippodrome: interrupted (Ctrl+C)", file=sys.stderr, flush=True)
        return 130
    if isinstance(exc, BrokenPipeError):
        quiet_stdout()
        return EXIT_PIPE_CLOSED
    if isinstance(exc, OSError) and exc.errno in UNWRITABLE:
        return unwritable(exc)
    if is_out_of_memory(exc):  # loaded by entry.py, before anything could run out
        with contextlib.suppress(OSError, MemoryError):
            print(f"hippodrome: {OUT_OF_MEMORY}", file=sys.stderr, flush=True)
        return 1
    return None


def _program() -> type[Any]:
    """invoke's Program, with its argument errors said as ours: exit 2 (bad
    arguments, as the README's table says) and a sentence, where invoke exits 1 on an
    unknown flag and lets a flag's wrong type (`--lines abc`) out as a traceback."""
    from invoke.exceptions import ParseError
    from invoke.program import Program

    class HdProgram(Program):
        def parse_core(self, argv: list[str] | None) -> None:
            with _said_as_usage(ParseError):
                super().parse_core(argv)
                if self.args["prompt-for-sudo-password"].value:
                    # invoke asked for it next, and with no terminal ended in an EOFError
                    # traceback (adv43 V/6); help leaves it out, with the others
                    raise ParseError("--prompt-for-sudo-password asks for sudo's password "
                                     "for shell commands, which no Hippodrome task runs: "
                                     "leave it out")

        def print_help(self) -> None:
            """Without invoke's options for shell commands (`--dry`, `--echo`, `--pty`,
            `--warn-only`, ...), which no Hippodrome task runs: `--dry` was offered as
            "Echo commands instead of running", and `hd --dry down` stopped the stack."""
            print(f"Usage: {self.binary} [--core-opts] <subcommand> [--subcommand-opts] ...")
            print("\nCore options:\n")
            self.print_columns([(flags, text) for flags, text in
                                self.initial_context.help_tuples()
                                if not any(f"--{name}" in flags for name in RUN_ONLY)])
            self.list_tasks()

    # parse_tasks: loading `ns` made Program's own say it so (bad_arguments_said_as_ours),
    # for `hd` and the stock `invoke` alike.
    return HdProgram


def _failing_module(exc: ImportError) -> str:
    """The top package whose own file raised: an ImportError raised by hand (a half-
    removed package's stub) names no module, and the sentence said "a module"."""
    tb = exc.__traceback__
    name = "a module"
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module and not module.startswith(("hippo_tasks", "__main__", "importlib")):
            name = module.split(".")[0]
        tb = tb.tb_next
    return name


class InvokeConfigError(UsageError):
    """~/.invoke.yaml (or /etc/invoke.yaml, ...) cannot be read: exit 2."""


def _config_class() -> type[Any]:
    """invoke's Config, whose configuration files (`~/.invoke.yaml`, `/etc/invoke.yaml`)
    are read with their errors said as ours. A malformed one was a YAML traceback for
    every command, `down` included; HOME=/dev/null (a service account, `su`) was
    NotADirectoryError for `hd init`. No file can be there then: it counts as none."""
    from invoke.config import Config

    def guarded(load: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: Any, path: str) -> Any:
            try:
                return load(self, path)
            except FileNotFoundError:
                raise
            except NotADirectoryError:
                raise FileNotFoundError(errno.ENOENT, "no such file", path) from None
            except Exception as exc:  # YAML, JSON, Python, permissions: the file's own fault
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                raise InvokeConfigError(
                    f"cannot read invoke's configuration file {path} ({reason}); `hd` runs "
                    "on invoke, which reads it first: fix the file, or move it aside") from None
        return read

    class HdConfig(Config):
        _load_yaml = guarded(Config._load_yaml)
        _load_yml = guarded(Config._load_yml)
        _load_json = guarded(Config._load_json)
        _load_py = guarded(Config._load_py)

    return HdConfig


def ended_as_hd_ends() -> None:
    """Under the stock `invoke` (no main() of ours runs): a closed stdin or stdout, a
    full disk under a redirect, a reader that closed the pipe and a Ctrl+C end the
    command as they end `hd` (main() above), where they were tracebacks and exit 1:
    `invoke up --detach >&-` started the stack and exited 1, `invoke status >
    /dev/full` and `invoke --list | head -0` printed tracebacks (adv43 V/2, V/3, V/7)."""
    stdio_on_devnull()
    previous = sys.excepthook
    if getattr(previous, "said_as_hd", False):
        return

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        code = said_end(exc)
        if code is not None:
            os._exit(code)
        previous(kind, exc, tb)

    hook.said_as_hd = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def bad_arguments_said_as_ours() -> None:
    """Under the stock `invoke` (tasks.py loads the tasks before invoke reads their
    flags): its Program's argument errors as `hd` says them, exit 2 and a sentence.
    invoke exited 1 on `invoke down --bogus`, `invoke why` without its name and an
    unknown task, where the README's table (and `hd`) say 2."""
    from invoke.exceptions import ParseError
    from invoke.program import Program

    original = Program.parse_tasks
    if getattr(original, "said_as_ours", False):
        return

    def parse_tasks(self: Any) -> None:
        with _said_as_usage(ParseError):
            original(self)

    parse_tasks.said_as_ours = True  # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks  # type: ignore[method-assign]


@contextlib.contextmanager
def _said_as_usage(parse_error: type[Exception]) -> Iterator[None]:
    try:
        yield
    except (parse_error, ValueError) as exc:
        text = _plain(str(exc).rstrip(".!"))
        if isinstance(exc, ValueError):
            text = f"a flag's value is not of the kind it takes ({text})"
        print(f"hippodrome: {text}; `hd --help` lists the commands, `hd COMMAND --help` "
              "their flags", file=sys.stderr)
        sys.exit(2)


_NEEDS_VALUE = re.compile(r"Flag <Argument: (\w+)(?: \((\w)\))?> needed value and was not "
                          r"given one")
_LEFT_OVER = re.compile(r"No idea what '(.*)' is")


def _plain(text: str) -> str:
    """invoke's parse errors in the user's words: `Flag <Argument: detail_type> needed
    value...` showed its own object (adv59)."""
    if m := _NEEDS_VALUE.fullmatch(text):
        return f"--{m.group(1).replace('_', '-')} needs a value"
    if m := _LEFT_OVER.fullmatch(text):
        return (f"no command or flag is '{m.group(1)}', and no flag here takes it as its "
                "value (a flag given twice takes one)")
    return text


UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
"""What writing the output may meet: files Hippodrome writes itself say a full disk as
StateDirError, so these, escaping that far, are the output's."""


def unwritable(exc: BaseException) -> int:
    """Say on stderr that the output was lost, and why; the exit status to use (120,
    as Python's own exit gives when its final flush fails)."""
    quiet_stdout()  # what is still buffered would fail again at exit
    with contextlib.suppress(OSError):
        os.write(2, f"hippodrome: the output could not be written: {exc}\n".encode())
    return 120
