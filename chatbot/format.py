"""What chat training and generation share: the turn separator and the source text.

Source = up to CONTEXT previous turns, oldest first, each closed by <sep> (speakers alternate,
so the order says who said what), cut to its last MAX_SRC pieces; target = the next turn
(at most MAX_TGT pieces)."""
from __future__ import annotations

import re

SEP = "<sep>"
CONTEXT = 2          # previous turns in the source
MAX_SRC, MAX_TGT = 64, 48


def source_text(history: list[str]) -> str:
    return "".join(t + SEP for t in history[-CONTEXT:])


_CJK = "\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"
_HALF = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；", ".": "。"}
# ASCII punctuation right after a Chinese character (or a closing full-width mark), and not
# inside a number (3.5) or a run of dots (...)
_AFTER_CJK = re.compile(rf"(?<=[{_CJK}])([,?!:;])|(?<=[{_CJK}])\.(?![.\d])")


def fullwidth(text: str) -> str:
    """A Chinese reply's ASCII punctuation after Chinese characters as full-width marks
    (你好吗? -> 你好吗？), as Chinese is written; English text is left as it is."""
    return _AFTER_CJK.sub(lambda m: _HALF[m.group(0)], text)
