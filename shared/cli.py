"""One rule for bad input across every command: repairable input gets a warning and goes on;
input that cannot be repaired exits with status 2 and one line on stderr, never a traceback."""
from __future__ import annotations

import math
import sys
import warnings
from typing import Callable, Optional


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def check_count(n, cap: int, what: str) -> int:
    """A request's count: not a positive whole number -> ValueError; above `cap` -> capped with
    a warning (repairable)."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive whole number, got {n!r}")
    if n > cap:
        warnings.warn(f"n={n} is above the cap; writing {cap} {what}")
        return cap
    return n


def check_flag(value, what: str) -> bool:
    """An on/off parameter: True or False, else ValueError naming it (the string "false" or an
    object is truthy, and would switch on what the caller meant to switch off)."""
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {shown(value)}")
    return value


def is_number(x) -> bool:
    """A real, finite number (an int or a float, not a bool): an int too large for a float
    (10**400) is not one."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def shown(value, width: int = 40) -> str:
    """`value` as an error message quotes it: its repr, cut to `width` characters, and never
    an error itself (an int of 5,000 digits has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[:width - 3] + "..."


def check_text(value, what: str, optional: bool = False):
    """A text parameter: a str (None too when `optional`), else ValueError naming it — so a
    wrong type gets the same one-line error as a wrong value, never an AttributeError. Text
    that is not valid Unicode (a lone surrogate such as "\\ud800", which JSON escapes and
    undecodable command-line bytes produce) is refused here, where it enters, never deeper
    down in a tokenizer or an output file."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__} {shown(value)}")
    bad = invalid_char(value)
    if bad is not None:
        raise ValueError(f"an invalid character in {what}: U+{ord(value[bad]):04X} at position "
                         f"{bad} (send UTF-8 text)")
    return value


def invalid_char(text: str):
    """The index of the first character of `text` that UTF-8 cannot encode (a surrogate code
    point: Python's strings may hold one alone), else None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return e.start


def check_strings(value, what: str) -> None:
    """Every string inside `value` (nested lists and dicts, keys too) is valid text."""
    stack = [value]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            check_text(x, what)
        elif isinstance(x, dict):
            stack += list(x.keys()) + list(x.values())
        elif isinstance(x, (list, tuple)):
            stack += list(x)


def _one_line(e: Exception) -> str:
    """An error as one printable line: an OSError as "<path>: <reason>" (IsADirectoryError,
    NotADirectoryError, PermissionError, ...), any text that cannot be printed escaped."""
    if isinstance(e, OSError) and e.strerror:
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e) or type(e).__name__
    text = " ".join(text.split())
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def run_cli(main: Callable[[Optional[list[str]]], int], argv: Optional[list[str]] = None) -> None:
    warnings.showwarning = _one_line_warning
    try:
        code = main(argv)
    except (ValueError, OSError) as e:      # bad input, or a path that cannot be read/written
        print(f"error: {_one_line(e)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
