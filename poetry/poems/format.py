"""What poem training and generation share: the form tokens and the source text.

Source = `<form>` + theme (a title or 1-2 keywords), e.g. `<qijue>明月`; target = the poem with
'，' after odd lines and '。' after even lines, then <eos>."""
from __future__ import annotations

from .verse import FORMS

FORM_TOKENS = [f"<{f}>" for f in FORMS]
MAX_THEME = 10            # theme characters kept (training titles are cut to 10)


def source_text(form: str, theme: str) -> str:
    return f"<{form}>{theme}"
