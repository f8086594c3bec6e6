"""What poem training and generation share: the form tokens and the source text.

Source = `<form>` + theme (a title or 1-2 keywords), then optionally `<kw>` and the planned
keywords separated by '，', e.g. `<qijue>秋夜<kw>蟋蟀，砧声`; target = the poem with '，' after
odd lines and '。' after even lines, then <eos>."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .verse import FORMS

FORM_TOKENS = [f"<{f}>" for f in FORMS]
KEYWORDS = "<kw>"                     # opens the planned keywords in a source
SPECIALS = FORM_TOKENS + [KEYWORDS]
MAX_THEME = 10            # theme characters kept (training titles are cut to 10)
MAX_KEYWORDS = 4          # planned keywords in one source


def source_text(form: str, theme: str, keywords: Sequence[str] = ()) -> str:
    plan = f"{KEYWORDS}{'，'.join(keywords)}" if keywords else ""
    return f"<{form}>{theme}{plan}"


def prepared(path: str | Path) -> Path:
    """A file `python -m poetry.poems.data prepare` writes (and a model ships): its path, or
    FileNotFoundError naming the command."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `python -m poetry.poems.data prepare` "
                                f"(it writes {path.name})")
    return path
