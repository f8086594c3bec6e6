"""One rule for bad input across every command: repairable input gets a warning and goes on;
input that cannot be repaired exits with status 2 and one line on stderr, never a traceback."""
from __future__ import annotations

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


def check_text(value, what: str, optional: bool = False):
    """A text parameter: a str (None too when `optional`), else ValueError naming it — so a
    wrong type gets the same one-line error as a wrong value, never an AttributeError."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"{what} must be text, got {type(value).__name__} {shown}")
    return value


def run_cli(main: Callable[[Optional[list[str]]], int], argv: Optional[list[str]] = None) -> None:
    warnings.showwarning = _one_line_warning
    try:
        code = main(argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
