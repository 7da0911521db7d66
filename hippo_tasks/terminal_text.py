"""Service output made safe to show on a terminal: colours kept, every other control
sequence made visible.

A service's bytes reached the user's terminal as they were, through the foreground
`hd up`, `hd logs` and the "last log lines" of a failure. So any service (or anything
it logs: a request header, a file name) could write the clipboard (`ESC ] 52`), retitle
or clear the terminal, move the cursor over earlier lines, or hide a line behind `\\r`.
Here SGR sequences (`ESC [ ... m`: colours and bold, which services use on purpose)
pass; every other control character is shown in caret notation as `cat -v` does
(`^[]52;c;...^G`), and bytes that are not UTF-8 become U+FFFD, as the README promises.
The log files keep the bytes exactly as written.

Plain lines (printable ASCII and tabs: nearly all of them) are returned as they are
after one regex scan, so the printer's hot path pays ~0.3 us a line.
"""

from __future__ import annotations

import os
import re
from typing import Any


def as_typed(value: str) -> str:
    """Text from the environment, argv or a file name, with each byte that was not UTF-8
    as `\\xNN`, as the shell's `$'...'` would have it typed (Python holds such a byte
    as a surrogate, which repr shows as `\\udcff` and a terminal cannot print)."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no undecodable byte made
        raw = value.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def colour_wanted(fd: int) -> bool:
    """Colour on a terminal, unless NO_COLOR is set (any value) or TERM says the
    terminal understands no escapes (`dumb`: Emacs' shell and compile buffers, some CI
    consoles; or unset), as git, ls and pip judge it: those showed `^[[32m` (adv24 c/5).
    The one rule for the printer and every command's own output."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM", "dumb") in ("dumb", ""):
        return False
    try:
        return os.isatty(fd)
    except (OSError, ValueError):
        return False


_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[()*+][0-9A-Za-z]|[=>78])")
"""What a terminal acts on without showing: CSI sequences, charset choices, keypad
modes, cursor save and restore."""


def as_seen(text: str) -> str:
    """A line as a terminal leaves it to the eye: colours taken out, and of a line
    rewritten with `\r` (a progress bar), the part after the last one (a CRLF line
    ending is no rewrite). Log readiness
    matches this too: `^READY$` never met a green READY or one after `loading 100%\r`,
    though every view showed READY (adv24 a/10)."""
    if "\x1b" in text:  # every CSI (colours, erase-line `\e[2K`, `\e[K`) and the
        text = _ESCAPES.sub("", text)  # charset choice `tput sgr0` writes (adv25 d/14)
    # A `\r` that ends the line is its CRLF ending, not a rewrite (adv25 d/2).
    return text.rstrip("\r").rsplit("\r", 1)[-1] if "\r" in text else text


_SUSPECT = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f-\xff]")
"""A byte that may need work: a control character (tab aside) or not ASCII."""
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Controls (tab aside), and the bidirectional overrides and isolates: U+202E turned
the rest of a line around on the screen, so a line could show other text than it
holds ("Trojan Source")."""
_BACKGROUND = re.compile(r"\x1b\[[0-9;:]*?(?<![0-9])(?:4[0-8]|10[0-7])[;:m]")
"""An SGR sequence that may set a background (and some that do not, `38;5;40`): only a
line with one is followed colour by colour, which costs a coloured line twice as much."""


def _caret(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return "^" + chr(code + 0x40)  # ESC -> ^[, BEL -> ^G, CR -> ^M
    if code == 0x7F:
        return "^?"
    if code > 0xFF:  # a bidirectional control
        return f"<U+{code:04X}>"
    return f"\\x{code:02x}"  # C1 controls (U+0080-U+009F): CSI and OSC in one character


_CONCEAL = "8"
"""SGR 8 hides the text after it: a line could hide itself and every line after it."""
RESET = "\x1b[0m"
Colour = tuple[int, ...] | None
"""A colour as SGR names it: (index,) of the 256 (the 16 basic ones included), or
(red, green, blue); None is the terminal's own."""


def _basic(param: str, pen: list[Colour]) -> None:
    """Follow one plain SGR parameter's effect on [foreground, background]."""
    code = int(param) if param.isdigit() else (0 if param == "" else -1)
    if code == 0:
        pen[:] = [None, None]
    elif code in (39, 49):
        pen[code == 49] = None
    elif 30 <= code <= 47 and code not in (38, 48):
        pen[code >= 40] = ((code - 30) % 10,)
    elif 90 <= code <= 107 and not 98 <= code <= 99:
        pen[code >= 100] = ((code - 90) % 10 + 8,)


def _extended(head: str, args: list[str], pen: list[Colour]) -> None:
    """Follow `38;5;N`, `38;2;R;G;B` (or their `38:...` forms; 48 for the background)."""
    if head not in ("38", "48"):
        return
    numbers = [int(a) for a in args if a.isdigit()]
    if args[:1] == ["5"] and len(numbers) >= 2:
        pen[head == "48"] = (numbers[1],)
    elif args[:1] == ["2"] and len(numbers) >= 4:
        pen[head == "48"] = tuple(numbers[-3:])
    else:
        pen[head == "48"] = None


def _shown(sgr: str, pen: list[Colour]) -> str:
    """An SGR sequence as it may reach the terminal: less conceal (`38;5;8` is colour 8
    of 256, not conceal), and with the background reset when it would make the text the
    same colour as its background (`30;40`: a line hidden as well as by conceal). `pen`,
    the line's [foreground, background] so far, is kept up to date."""
    params, out, i = sgr[2:-1].split(";"), [], 0
    while i < len(params):
        if params[i] in ("38", "48", "58") and i + 1 < len(params):
            n = 2 + {"5": 1, "2": 3}.get(params[i + 1], 0)  # 38;5;N or 38;2;R;G;B
            out += params[i:i + n]
            _extended(params[i], params[i + 1:i + n], pen)
            i += n
            continue
        if ":" in params[i]:  # 38:2::R:G:B, one parameter with sub-parameters
            head, *args = params[i].split(":")
            _extended(head, args, pen)
            out.append(params[i])
        elif params[i] != _CONCEAL:
            out.append(params[i])
            _basic(params[i], pen)
        i += 1
    if pen[0] is not None and pen[0] == pen[1]:
        out.append("49")
        pen[1] = None
    return f"\x1b[{';'.join(out)}m" if out else ""


def for_terminal(text: str) -> str:
    """`text` with colours kept and every other control character made visible; one
    `\r` at the end (a CRLF line ending) is dropped, not shown. A line that set colours
    is reset at its end, so the next line (Hippodrome's own) starts plain."""
    if not _CONTROL.search(text):
        return text
    if text.endswith("\r"):
        text = text[:-1]
    out, pos, styled = [], 0, False
    pen: list[Colour] = [None, None]
    backgrounds = _BACKGROUND.search(text) is not None  # else only conceal is looked at
    for sgr in _SGR.finditer(text):
        out.append(_CONTROL.sub(_caret, text[pos:sgr.start()]))
        shown = sgr.group()
        if backgrounds or _CONCEAL in shown:
            shown = _shown(shown, pen)
        out.append(shown)
        pos = sgr.end()
        if shown:
            styled = shown not in ("\x1b[m", "\x1b[0m")
    out.append(_CONTROL.sub(_caret, text[pos:]))
    if styled:
        out.append(RESET)
    return "".join(out)


def line_for_terminal(line: bytes) -> bytes:
    """One line of a service's output (no line break), as for_terminal shows it."""
    if not _SUSPECT.search(line):
        return line
    return for_terminal(line.decode("utf-8", "replace")).encode("utf-8")


_SGR_BYTES = re.compile(rb"\x1b\[[0-9;:]*m")


def line_without_colour(line: bytes) -> bytes:
    """line_for_terminal for a terminal with colour off (NO_COLOR, TERM=dumb or unset):
    a service's own colours go too. They passed, `^[[31m` on the very terminals the
    rule is for (adv25 d/6)."""
    shown = line_for_terminal(line)
    return _SGR_BYTES.sub(b"", shown) if b"\x1b" in shown else shown


def lines_for_terminal(text: str) -> str:
    """A message of several lines, each as for_terminal shows it: what Hippodrome says
    often quotes another program's text (a port holder's command line, a service's last
    lines, a recorded detail-type), which must not reach the terminal as controls."""
    if not _CONTROL.search(text.replace("\n", "")):
        return text
    return "\n".join(for_terminal(line) for line in text.split("\n"))


def one_line(text: str) -> str:
    """Another program's text quoted inside a message of ours (a port holder's command
    line): its line breaks shown as `cat -v` shows them, where lines_for_terminal keeps
    a message's own. A holder's argv with `\r\n` put a line of its choosing into `hd up`
    and `hd doctor` (`FAKE: hippodrome | stack ready`), and lost the `\r` (adv54 F2)."""
    return text.replace("\r", "^M").replace("\n", "^J")


def for_output(text: str, fd: int) -> str:
    """lines_for_terminal for what a command prints on `fd`; with colour off there
    (NO_COLOR, a pipe, TERM=dumb) the colours the quoted text brought go too, with the
    reset that followed them. They passed: `hd why` and `hd status` showed a service's
    `ESC[31m` under NO_COLOR and into a pipe, where `hd logs` takes them out (adv53 F2)."""
    shown = lines_for_terminal(text)
    if "\x1b" not in shown or colour_wanted(fd):
        return shown
    return _SGR.sub("", shown)


def to_devnull(stream: Any) -> None:
    """After EPIPE, point the stream's descriptor at /dev/null (Python's documented
    remedy, `signal` docs): what is still buffered, and any later write, goes nowhere
    instead of failing again (at exit: "Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stream (closed, replaced)
        pass
