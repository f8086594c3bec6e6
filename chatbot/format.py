"""What chat training and generation share: the turn separator and the source text.

Source = up to CONTEXT previous turns, oldest first, each closed by <sep> (speakers alternate,
so the order says who said what), cut to its last MAX_SRC pieces; target = the next turn
(at most MAX_TGT pieces)."""
from __future__ import annotations

SEP = "<sep>"
CONTEXT = 2          # previous turns in the source
MAX_SRC, MAX_TGT = 64, 48


def source_text(history: list[str]) -> str:
    return "".join(t + SEP for t in history[-CONTEXT:])
