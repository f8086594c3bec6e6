"""What tune training and generation share: the setting tokens and the source text.

Source = three special tokens, e.g. `<M:6/8><K:maj><R:jig>`; target = the tune's normalised body
(in C of its mode, see `poetry.tunes.abc`) as music tokens."""
from __future__ import annotations

from .abc import KEY_MODES, METERS

RHYTHMS = ("jig", "reel", "hornpipe", "polka", "waltz", "slip jig", "march", "strathspey",
           "air", "song", "other")
SETTING_TOKENS = ([f"<M:{m}>" for m in METERS] + [f"<K:{k}>" for k in KEY_MODES]
                  + [f"<R:{r}>" for r in RHYTHMS])


def source_text(meter: str, mode: str, rhythm: str) -> str:
    return f"<M:{meter}><K:{mode}><R:{rhythm}>"
