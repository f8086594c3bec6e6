"""Bar-structure rules for generated tunes, as a `shared.decoding.Constraint`, plus the same rules
as plain checks for data and evaluation.

A tune (a normalised body, see `poetry.tunes.abc`) obeys them when:
* every bar but the first (a pickup) and the last is exactly one bar of the meter long, and no
  bar is longer; a tuplet `(p` stays inside one bar and its p notes share one written duration;
* repeats balance: `|:` ... `:|` (or `::`), a first ending `[1` right after a bar line inside a
  repeat, closed by `:|` and followed at once by `[2`; `||` and `|]` never inside a repeat;
* a tie is followed by a note; the tune ends with `|]` or `:|`, then <eos>;
* after a note with an accidental, the same note later in its bar is written with one too (ABC
  carries an accidental through the bar, so a bare `c` after `^c` would sound C sharp while
  its token says C).
The constraint also keeps a form where one is asked for (FORMS: AABB = two 8-bar parts after an
optional pickup, each repeated with `|: ... :|`/`::` or 1st/2nd endings in its 8th bar; AB = two
8-bar parts played once, `||` between), else caps the length (`max_bars`, closing the tune
properly when the cap nears) and asks for `min_bars`; ends every tune on the tonic (C or c: the
model writes in C of the mode) written a quarter or longer, only rests after it, in a last bar
of no tuplet and no note or rest shorter than an eighth (`check_ending`; a bar line that would
end the tune is allowed only then, and the bar that must end it is steered there from its
start), and, given the hashes of all
4-bar windows of the training tunes, masks the token that would complete a bar whose 4-bar window
(with the three bars before it) copies a training tune. Bars compare by their tokens without ties
and endings (a tie added afterwards cannot dodge the check). The ban is best effort: when masking
would leave a row nothing (the only completion is the copied one) it is lifted.
`PitchRules` keeps notes in a range and caps the share of notes outside the mode.
`tune_rules` chains both after the shared `ForcePrefix` (the user's opening bars).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import struct
from dataclasses import dataclass, replace
from typing import Iterable, Optional, Sequence

import torch

from shared.rules import AllOf, ForcePrefix

from .abc import (BARS, TUPLETS, Key, bar_length, bars, beat_length, note_pitch,
                  token_duration, token_kind, tokenize)

START = (False, 0, False)          # repeat state: (repeat open, ending 0/1/2, `[2` required)
PART_BARS = 8                      # a part of a dance tune: 8 bars after its pickup
# a form: per part, whether it is repeated (`|: ... :|`, or 1st/2nd endings); None = free
FORMS = {"AABB": (True, True), "AB": (False, False), "free": None}


def repeat_step(state: tuple, tok: str) -> tuple | None:
    """Repeat state after a bar or ending token, or None when the token is not allowed there."""
    open_, ending, need2 = state
    if need2 or tok == "[2":
        return (False, 2, False) if need2 and tok == "[2" else None
    if tok == "|:":
        return None if open_ else (True, 0, False)
    if tok == ":|":
        return (False, 0, ending == 1) if open_ else None
    if tok == "::":
        return (True, 0, False) if open_ and ending == 0 else None
    if tok in ("||", "|]"):
        return None if open_ else START
    if tok == "[1":
        return (True, 1, False) if open_ and ending == 0 else None
    return (open_, 0 if ending == 2 else ending, False)          # "|"


def check_structure(tokens: Sequence[str]) -> str | None:
    """The first repeat/ending/ending-of-tune problem of a token list, or None."""
    state, prev, tied = START, None, False
    for i, tok in enumerate(tokens):
        kind = token_kind(tok)
        if kind is None:
            return f"unknown symbol {tok!r}"
        if tied and kind not in ("bar", "ending", "note"):
            return "a tie is not followed by a note"
        tied = tok == "-" or (tied and kind != "note")
        if kind in ("bar", "ending"):
            if kind == "ending" and prev not in BARS:
                return f"ending {tok} not after a bar line"
            state = repeat_step(state, tok)
            if state is None:
                return f"{tok} breaks the repeats at token {i}"
        elif state[2]:
            return "a first ending's `:|` is not followed by `[2`"
        prev = tok
    if prev not in ("|]", ":|") or state != START or tied:
        return "the tune does not end with a closing bar line"
    return None


def _tuplet_problem(tokens: Sequence[str]) -> str | None:
    """Tuplets: p notes of one written duration, all in one bar."""
    for i, tok in enumerate(tokens):
        if token_kind(tok) == "tuplet":
            durs, j = [], i + 1
            while len(durs) < int(tok[1]) and j < len(tokens):
                kind = token_kind(tokens[j])
                if kind in ("bar", "tuplet", "ending"):
                    return "a tuplet crosses a bar line or is incomplete"
                if kind in ("note", "rest"):
                    nxt = tokens[j + 1] if j + 1 < len(tokens) else ""
                    durs.append(nxt if token_kind(nxt) == "dur" else "")
                j += 1
            if len(set(durs)) != 1 or len(durs) != int(tok[1]):
                return "a tuplet mixes durations"
    return None


def _carried_accidental(tokens: Sequence[str]) -> str | None:
    """A bare note after the same note with an accidental in one bar: ABC would carry the
    accidental to it, so its written token would not say its pitch."""
    altered: set[str] = set()
    for tok in tokens:
        if tok in BARS:
            altered = set()
        elif token_kind(tok) == "note":
            if tok[0] in "^_=":
                altered.add(tok.lstrip("^_="))
            elif tok in altered:
                return f"a bare {tok} after an accidental on it in the same bar"
    return None


def check_tune(body: str, meter: str) -> list[str]:
    """Everything in `body` that breaks the rules (empty list = a valid tune)."""
    tokens = tokenize(body)
    problems = [p for p in (check_structure(tokens), _tuplet_problem(tokens),
                            _carried_accidental(tokens)) if p]
    full, bs = bar_length(meter), bars(tokens)
    for i, (_, dur, _) in enumerate(bs):
        edge = i == 0 or i == len(bs) - 1
        if dur > full or dur <= 0 or (dur != full and not edge):
            problems.append(f"bar {i + 1} lasts {dur} eighths, the meter {meter} needs {full}")
    return problems


def check_ending(body: str) -> str | None:
    """What breaks the ending rule, or None: the last bar's last note is the tonic (C or c, the
    tune being in C of its mode) written a quarter or longer, only rests after it, and the
    last bar has no tuplet and no note or rest shorter than an eighth. Generated tunes keep
    it; real tunes need not, so data preparation does not ask it."""
    tokens = tokenize(body)
    if not tokens or tokens[-1] not in BARS:
        return "the tune does not end with a bar line"
    start = max((i for i, t in enumerate(tokens[:-1]) if t in BARS), default=-1) + 1
    last = [t for t in tokens[start:-1] if not t.startswith("[")]
    if any(token_kind(t) == "tuplet" for t in last):
        return "the last bar has a tuplet"
    lengths = []                               # [token, written length in eighths]
    for t in last:
        if token_kind(t) in ("note", "rest"):
            lengths.append([t, 1])
        elif token_kind(t) == "dur" and lengths:
            lengths[-1][1] = token_duration(t)
    if any(d < 1 for _, d in lengths):
        return "the last bar has a note shorter than an eighth"
    notes = [(t, d) for t, d in lengths if t != "z"]
    if not notes or notes[-1][0].lstrip("=")[0] not in "Cc":
        return "the last note is not the tonic"
    if notes[-1][1] < 2:
        return "the last note is shorter than a quarter"
    return None


# -- copies of training tunes -------------------------------------------------------------------
def bar_hash(content: Iterable[str]) -> int:
    """A stable 64-bit hash of one bar's tokens (ties and endings left out)."""
    text = "\x1f".join(t for t in content if t != "-" and not t.startswith("["))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def window_hash(bar_hashes: Sequence[int]) -> int:
    data = struct.pack(f"<{len(bar_hashes)}Q", *bar_hashes)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def window_hashes(body: str, n: int = 4) -> set[int]:
    """Hashes of every n consecutive (non-empty) bars of a normalised body."""
    contents, cur = [], []
    for tok in tokenize(body) + ["|"]:
        if tok in BARS:
            contents += [cur] if cur else []
            cur = []
        else:
            cur.append(tok)
    hs = [bar_hash(c) for c in contents]
    return {window_hash(hs[i:i + n]) for i in range(len(hs) - n + 1)}


def save_windows(path, windows: set[int]) -> None:
    """Window hashes as a sorted uint64 .npy (8 bytes a window; loads without pickle)."""
    import numpy as np
    np.save(path, np.array(sorted(windows), dtype=np.uint64), allow_pickle=False)


def load_windows(path) -> set[int]:
    import numpy as np
    return set(np.load(path, allow_pickle=False).tolist())


def copied_windows(body: str, windows: set[int], n: int = 4) -> int:
    """How many n-bar windows of `body` occur in a training tune."""
    return len(window_hashes(body, n) & windows)


# -- the constraint -----------------------------------------------------------------------------
class _Row:
    """Decoding state of one row; durations in grains (1/grain of an eighth)."""

    __slots__ = ("full", "used", "pending", "role", "tup_left", "tup_q", "tup_d", "tied",
                 "tie_ok", "rep", "after_bar", "n_bars", "must_end", "eos_ok", "done",
                 "content", "hashes", "pos", "last", "last_tonic", "form", "part", "part_bars",
                 "pickup", "end_ok", "bar_fine", "played", "altered")

    def __init__(self, full: int, form: Optional[tuple] = None):
        self.full, self.used, self.pending, self.role = full, 0, 0, 0
        self.tup_left, self.tup_q, self.tup_d, self.tied, self.tie_ok = 0, 1, 0, "", False
        self.last = ""                     # the last note's name, without accidental
        self.last_tonic = False            # the last note is the tonic (C or c of the mode)
        self.end_ok = False                # this bar's last note is a tonic of a quarter or more
        self.bar_fine = True               # this bar has no tuplet, nothing shorter than an eighth
        self.form = form                   # FORMS value: per part, repeated or not; None = free
        self.part, self.part_bars = 0, 0   # the current part; its full bars so far this pass
        self.pickup = 0                    # grains of the first bar when it is a pickup
        self.rep, self.after_bar, self.n_bars = START, False, 0
        self.must_end = self.eos_ok = self.done = False
        self.content, self.hashes, self.pos = [], [], 0
        self.played = []                   # form: (part, bar in part, content) of each bar
                                           # played the first time through
        self.altered = frozenset()         # notes (letter and octave) given an accidental
                                           # in this bar: ABC carries it to a bare one

    def copy(self) -> "_Row":
        new = _Row.__new__(_Row)
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(new, name, list(value) if isinstance(value, list) else value)
        return new


@dataclass(frozen=True)
class BarState:
    """What the allowed next tokens depend on (masks are cached per distinct value); durations
    in grains."""
    full: int               # grains in a bar of the row's meter
    used: int               # grains of the current bar so far
    pending: int            # 0, or the last note (1) / rest (2) still waits for its duration
    role: int               # the pending one: 0 plain, 1 first of a tuplet, 2 later in a tuplet
    tup_q: int              # a tuplet's p notes last q plain ones
    tup_d: int              # the duration of a tuplet's first note (its others repeat it)
    in_tup: bool            # inside a tuplet
    tied: str               # after a tie: the pitch name the next note must have
    tie_ok: bool            # a tie may follow
    rep: tuple              # repeat state (see repeat_step)
    after_bar: bool         # right after a bar line (an ending may start)
    start: bool             # nothing generated yet (`|:` may open the tune)
    first: bool             # in the first bar (a pickup may be short)
    can_close: bool         # long enough to end
    force: bool             # the length cap is near: close the tune
    room_end1: bool         # room for a first and a second ending
    eos_ok: bool            # the tune may end here
    final: bool             # this bar ends the tune: its last note must be the tonic
    last_tonic: bool        # the last note is the tonic
    end_ok: bool            # this bar's last note is a tonic of a quarter or more (rests after)
    bar_fine: bool          # this bar has no tuplet and no note or rest shorter than an eighth
    opening: int            # `|:` at the start: 0 not allowed, 1 allowed, 2 required
    form_close: str         # form: the bar line that ends the current part ("" = free form)
    part_last: bool         # form: this bar is its part's last
    pickup: int             # form: grains of the pickup (the final bar may be short by as much)
    altered: frozenset = frozenset()   # notes with an accidental earlier in this bar


class TuneConstraint:
    """Bar, repeat, form, final-note, length and no-copy rules for decoding normalised tune
    bodies (in C of their mode: the tonic is C or c).

    meters[i] and forms[i] are the meter and form (a FORMS name, default "free") of input item
    i (`begin(rows)` maps rows to items). A form is a list of 8-bar parts after an optional
    pickup, each repeated (`|: ... :|`, `::`, or `[1 ... :|[2 ...` in its 8th bar) or not
    (closed by `||`); the final bar may be short by the pickup's length. A free tune has
    `min_bars` to `max_bars` bars. Either way the tune ends as `check_ending` asks. `windows` holds
    the `window_hash`es of the training tunes' 4-bar windows. Masks are cached per distinct
    `BarState` (and ban); a mask depends on nothing else but the tokenizer, so a writer passes
    one `cache` dict to every batch's constraint."""

    def __init__(self, tokenizer, meters: Sequence[str], *, max_bars: int = 32,
                 min_bars: int = 4, windows: Optional[set[int]] = None,
                 forms: Optional[Sequence[str]] = None, cache: Optional[dict] = None):
        if not 1 <= min_bars <= max_bars:
            raise ValueError(f"need 1 <= min_bars <= max_bars, got {min_bars}, {max_bars}")
        unknown = set(forms or ()) - set(FORMS)
        if unknown:
            raise ValueError(f"unknown form {sorted(unknown)[0]!r}: use one of "
                             f"{', '.join(FORMS)}")
        self.forms = [FORMS[f] for f in forms] if forms else [None] * len(meters)
        self.itos, self.eos, self.V = tokenizer.itos, tokenizer.eos_id, tokenizer.vocab_size
        specials = set(tokenizer.specials)
        self.kinds = [None if t in specials else token_kind(t) for t in self.itos]
        durs = {i: token_duration(t) for i, t in enumerate(self.itos) if self.kinds[i] == "dur"}
        self.grain = math.lcm(1, *(d.denominator for d in durs.values()))
        self.dur_g = {i: int(d * self.grain) for i, d in durs.items()}
        self.ids = {k: [i for i, kk in enumerate(self.kinds) if kk == k] for k in
                    ("note", "rest", "dur", "tuplet", "tie")}
        self.by_pitch: dict[str, set[int]] = {}          # a tie joins notes of one pitch name
        for i in self.ids["note"]:
            self.by_pitch.setdefault(self.itos[i].lstrip("^_="), set()).add(i)
        self.tonic = {i for i in self.ids["note"] if self.itos[i].lstrip("=")[0] in "Cc"}
        self.bare = {self.itos[i]: i for i in self.ids["note"] if self.itos[i][0] not in "^_="}
        self.bar_ids = {t: self.itos.index(t) for t in BARS + ("[1", "[2") if t in self.itos}
        if "[2" not in self.bar_ids:           # a first ending needs its second
            self.bar_ids.pop("[1", None)
        self.meters = [int(bar_length(m) * self.grain) for m in meters]
        self.max_bars, self.min_bars = max_bars, min_bars
        self.windows = windows or set()
        self._fill = self._fill_table(max(self.meters))
        # room[x]: a note can start in x free grains and leave some (fillable) room after it
        self._room = [any(0 < x - d and self._fill[x - d] for d in self._steps())
                      for x in range(len(self._fill))]
        self._cache: dict[tuple, torch.Tensor] = {} if cache is None else cache
        self.rows: list[_Row] = []

    def _steps(self) -> list[int]:
        return sorted(set(self.dur_g.values()) | {self.grain})

    def _fill_table(self, top: int) -> list[bool]:
        """fill[x]: x grains can be filled exactly by plain note durations."""
        steps = self._steps()
        fill = [True] + [False] * top
        for x in range(1, top + 1):
            fill[x] = any(s <= x and fill[x - s] for s in steps)
        return fill

    def _final_ok(self, k: BarState, rem: int, d: int) -> bool:
        """May the pending note (rest) of the final bar last d grains, `rem` being free? The bar
        goes in whole eighths (no flourish of short notes at the end) and closes on a tonic of
        a quarter or more, rests after it allowed. Every choice keeps the bar able to do so:
        after it either such a tonic is written or a quarter is left for one."""
        g, left = self.grain, rem - d
        if d % g:
            return False
        if k.pending == 2:                 # a rest: after the closing tonic, or room for one
            return k.end_ok or left >= 2 * g
        return (d >= 2 * g or left >= 2 * g) if k.last_tonic else left >= 2 * g

    def _fits(self, rem: int, d: int) -> bool:
        return 0 <= rem - d and self._fill[rem - d]

    def _can_start(self, rem: int, factor: int) -> bool:
        """Some duration (factor * d) of a new note fits `rem` and leaves a fillable rest."""
        return any(self._fits(rem, factor * d) for d in set(self.dur_g.values()) | {self.grain})

    # -- masks ----------------------------------------------------------------------------------
    def _resolved(self, k: BarState, ban_bars: bool) -> set[int]:
        """Allowed ids once the last note's duration is settled."""
        full, used, in_tup, tied, tie_ok, rep = k.full, k.used, k.in_tup, k.tied, k.tie_ok, k.rep
        first, can_close, force = k.first, k.can_close, k.force
        if rep[2]:
            return {self.bar_ids["[2"]}
        if k.start and k.opening == 2:
            return {self.bar_ids["|:"]}
        # a tie needs a note after it: room in this bar, or a bar line that does not end the
        # part; in the final bar the note tied to (same pitch) must still fit the ending: a
        # tonic needs a quarter left, any other note a quarter more for the tonic after it
        closing, rem, g = force or k.part_last, full - used, self.grain
        tie = tie_ok and not tied and (rem > 0 or in_tup or not closing) and \
            (not k.final or rem % g > 0 or rem >= (2 * g if k.last_tonic else 3 * g))
        out = set(self.ids["tie"]) if tie else set()
        if k.eos_ok and not tied:
            out.add(self.eos)
        notes = set(self.by_pitch.get(tied, ())) if tied else set(self.ids["note"])
        # after ^c a bare c would read as c sharp: it is written out
        notes -= {self.bare[name] for name in k.altered if name in self.bare}
        rests = set() if tied else set(self.ids["rest"])
        if in_tup:                         # the rest of a tuplet: notes of the forced duration
            return out | notes | rests
        if k.final and rem > 0 and rem % g == 0 and rem < 3 * g:   # see _final_ok
            notes = notes & self.tonic if rem >= 2 * g else set()
            rests = rests if k.end_ok else set()
        elif k.final and rem > 0 and rem % g and not self._room[rem]:
            notes, rests = notes & self.tonic, rests if k.end_ok else set()
        if rem > 0 and self._can_start(rem, 1):
            out |= notes | rests
        if rem > 0 and not tied and not k.final:       # a tuplet's last note is not chosen
            out |= {i for i in self.ids["tuplet"]
                    if self._can_start(rem, TUPLETS[int(self.itos[i][1])])}
        if k.after_bar and not (force or tied) and k.room_end1 and "[1" in self.bar_ids \
                and repeat_step(rep, "[1"):
            out.add(self.bar_ids["[1"])
        if k.start and k.opening and "|:" in self.bar_ids:
            out.add(self.bar_ids["|:"])
        if used == 0 or ban_bars:
            return out
        if k.form_close:
            return out | self._form_bars(k)
        short = used < full
        for b in BARS:
            state = repeat_step(rep, b) if b in self.bar_ids else None
            ends = b == "|]" or (b == ":|" and short and not first)
            if state is None or (short and not first and not ends):
                continue
            if (ends and (not can_close or state != START or tied)) or \
                    (force and b != (":|" if rep[0] else "|]")):
                continue
            if (ends or (force and state == START)) and not (k.end_ok and k.bar_fine):
                continue                   # the tune ends on a long tonic (check_ending)
            out.add(self.bar_ids[b])
        return out

    def _form_bars(self, k: BarState) -> set[int]:
        """Bar lines a form allows once the current bar holds notes."""
        short = k.used < k.full
        if short and k.first:
            return {self.bar_ids["|"]}                      # a pickup
        if short and not (k.final and k.pickup and k.used == k.full - k.pickup):
            return set()
        if not k.part_last:
            return {self.bar_ids["|"]}
        if (k.final and not (k.end_ok and k.bar_fine)) or k.tied or \
                k.form_close not in self.bar_ids:
            return set()
        return {self.bar_ids[k.form_close]}

    def _build(self, k: BarState, bans: tuple) -> set[int]:
        ban_durs, ban_impl, ban_bars = bans
        if not k.pending:
            return self._resolved(k, ban_bars)
        f, rem = (k.tup_q if k.role == 1 else 1), k.full - k.used
        if k.role == 2:                    # later notes of a tuplet repeat the first's length
            out = {i for i, d in self.dur_g.items() if d == k.tup_d}
            impl = k.tup_d == self.grain
        else:
            out = {i for i, d in self.dur_g.items() if self._fits(rem, f * d)}
            impl = self._fits(rem, f * self.grain)
        out -= ban_durs
        if k.final and k.role == 0 and rem % self.grain == 0:
            out = {i for i in out if self._final_ok(k, rem, self.dur_g[i])}
            impl = impl and self._final_ok(k, rem, self.grain)
        elif k.final and k.role == 0 and not k.last_tonic:     # the last note is the tonic
            out = {i for i in out if self.dur_g[i] < rem}
            impl = impl and self.grain < rem
        if impl and not ban_impl:          # no duration token: the note lasts one eighth
            used = k.used + (0 if k.role == 2 else f * self.grain)
            end_ok = k.end_ok and k.pending == 2           # a note of one eighth is too short
            out |= self._resolved(replace(k, used=used, tied="", tie_ok=k.pending == 1,
                                          after_bar=False, start=False, eos_ok=False,
                                          end_ok=end_ok), ban_bars)
        return out

    def _bans(self, row: _Row) -> tuple:
        """Tokens that would complete a bar copying a training window (see module doc)."""
        none = (frozenset(), False, False)
        if not self.windows or len(row.hashes) < 3:
            return none

        def copied(extra: list[str]) -> bool:
            h = bar_hash(row.content + extra)
            return window_hash(row.hashes[-3:] + [h]) in self.windows

        rem = row.full - row.used
        if row.pending and row.role == 0:
            durs = frozenset(i for i, d in self.dur_g.items()
                             if d == rem and copied([self.itos[i]]))
            return durs, rem == self.grain and copied([]), False
        if not row.pending and row.used > 0 and row.tup_left == 0:
            return frozenset(), False, copied([])
        return none

    def _key(self, row: _Row) -> BarState:
        bars_left = self.max_bars - row.n_bars
        common = dict(full=row.full, used=row.used, pending=row.pending, role=row.role,
                      tup_q=row.tup_q, tup_d=row.tup_d, in_tup=row.tup_left > 0,
                      tied=row.tied, tie_ok=row.tie_ok, rep=row.rep, after_bar=row.after_bar,
                      start=row.pos == 0, first=row.n_bars == 0, eos_ok=row.eos_ok,
                      last_tonic=row.last_tonic, end_ok=row.end_ok, bar_fine=row.bar_fine,
                      altered=row.altered)
        if row.form is None:
            force = bars_left <= (2 if row.rep[1] == 1 else 1)
            return BarState(**common, can_close=row.n_bars + 1 >= self.min_bars, force=force,
                            room_end1=bars_left >= 2, final=force and row.rep[1] != 1,
                            opening=1, form_close="", part_last=False, pickup=0)
        part = min(row.part, len(row.form) - 1)
        part_last = row.part_bars == PART_BARS - 1
        return BarState(**common, can_close=False, force=False,
                        room_end1=row.form[part] and part_last,
                        final=part_last and row.part == len(row.form) - 1 and row.rep[1] != 1,
                        opening=2 if row.form[0] else 0, form_close=self._form_close(row),
                        part_last=part_last, pickup=row.pickup)

    @staticmethod
    def _form_close(row: _Row) -> str:
        """The bar line that ends the row's current part (when its 8th bar is full)."""
        form, p, rep = row.form, min(row.part, len(row.form) - 1), row.rep
        last = p == len(form) - 1
        after = "|]" if last else "|:" if form[p + 1] else "||"     # a part played once
        if not form[p] or rep[1] == 2 or not rep[0]:
            return after
        if rep[1] == 1:
            return ":|"                                 # a first ending: back to the part's start
        return ":|" if last or not form[p + 1] else "::"

    def _mask(self, row: _Row) -> torch.Tensor:
        if row.done or row.must_end:
            return self._tensor(("only", self.eos), {self.eos})
        key, bans = self._key(row), self._bans(row)
        if (key, bans) not in self._cache:
            ids = self._build(key, bans) or self._build(key, (frozenset(), False, False))
            self._tensor((key, bans), ids or {self.eos})
        return self._cache[(key, bans)]

    def _tensor(self, key, ids: set[int]) -> torch.Tensor:
        if key not in self._cache:
            mask = torch.zeros(self.V, dtype=torch.bool)
            mask[sorted(ids)] = True
            self._cache[key] = mask
        return self._cache[key]

    # -- state updates --------------------------------------------------------------------------
    def _settle(self, row: _Row, d: int) -> None:
        """The pending note/rest lasts d grains (d = grain when no duration token follows)."""
        if row.role == 1:
            row.used += row.tup_q * d          # the whole tuplet: p notes in the time of q
            row.tup_d = d
        elif row.role == 0:
            row.used += d
            row.bar_fine = row.bar_fine and d >= self.grain
            if row.pending == 1:
                row.end_ok = row.last_tonic and d >= 2 * self.grain
        row.tie_ok, row.pending = row.pending == 1, 0

    def _feed(self, row: _Row, i: int) -> None:
        tok, kind = self.itos[i], self.kinds[i]
        row.pos += 1
        row.eos_ok = False
        if i == self.eos or kind is None:
            row.done = row.done or i == self.eos or i == 0
            return
        if kind == "dur":
            self._settle(row, self.dur_g[i])
            row.content.append(tok)
            return
        if row.pending:
            self._settle(row, self.grain)
        row.after_bar = False
        if kind in ("note", "rest"):
            row.pending, row.tied = (1 if kind == "note" else 2), ""
            row.last = tok.lstrip("^_=")
            row.end_ok = row.end_ok and kind == "rest"
            if kind == "note":
                row.last_tonic = i in self.tonic
                if tok[0] in "^_=":
                    row.altered = row.altered | {tok.lstrip("^_=")}
            row.role = 0 if row.tup_left == 0 else 1 if row.tup_d == 0 else 2
            row.tup_left = max(row.tup_left - 1, 0)
            row.content.append(tok)
        elif kind == "tie":
            row.tied, row.tie_ok = row.last, False
        elif kind == "tuplet":
            row.tup_left, row.tup_q, row.tup_d = int(tok[1]), TUPLETS[int(tok[1])], 0
            row.bar_fine = False
            row.content.append(tok)
        elif kind == "ending":
            row.rep = repeat_step(row.rep, tok) or row.rep
        else:
            self._bar(row, tok)

    def _bar(self, row: _Row, tok: str) -> None:
        short, first = row.used < row.full, row.n_bars == 0
        if row.content:
            row.n_bars += 1
            row.hashes.append(bar_hash(row.content))
        ending = row.rep[1]
        row.rep = repeat_step(row.rep, tok) or row.rep
        if row.form is not None:
            if row.content:
                if ending != 2 and not (short and first):
                    row.played.append((row.part, row.part_bars, tuple(row.content)))
                self._advance_part(row, short and first)
            row.must_end = row.part >= len(row.form) or tok == "|]"
        else:
            row.must_end = tok == "|]" or (tok == ":|" and row.rep == START and (
                (short and not first) or row.n_bars >= self.max_bars))
            row.eos_ok = tok == ":|" and row.rep == START and row.n_bars >= self.min_bars \
                and row.end_ok and row.bar_fine
        row.used, row.content, row.after_bar, row.tie_ok = 0, [], True, False
        row.end_ok, row.bar_fine, row.altered = False, True, frozenset()

    @staticmethod
    def _advance_part(row: _Row, pickup: bool) -> None:
        """A bar of a form ended: count it in its part."""
        if pickup:
            row.pickup = row.used
        elif row.rep[2]:                   # after a first ending the second replays bar 8
            row.part_bars = PART_BARS - 1
        elif row.part_bars == PART_BARS - 1:
            row.part, row.part_bars = row.part + 1, 0
        else:
            row.part_bars += 1

    # -- the Constraint protocol ----------------------------------------------------------------
    def begin(self, rows: torch.Tensor) -> torch.Tensor:
        self.rows = [_Row(self.meters[r], self.forms[r]) for r in rows.tolist()]
        return self.masks()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        for row, i in zip(self.rows, tokens.tolist()):
            if not row.done:
                self._feed(row, i)
        return self.masks()

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = [self.rows[i].copy() for i in index.tolist()]

    def masks(self) -> torch.Tensor:
        return torch.stack([self._mask(row) for row in self.rows])

    def check_prefix(self, ids: Sequence[int], item: int = 0) -> str | None:
        """Why forcing `ids` as item's opening would break the rules, or None if it is fine."""
        row = _Row(self.meters[item], self.forms[item])
        for n, i in enumerate(ids):
            if not bool(self._mask(row)[i]):
                return f"token {n + 1} ({self.itos[i]!r}) breaks the tune rules there"
            self._feed(row, i)
        return None


@dataclass(frozen=True)
class Pitches:
    """One item's pitch rules, in the key the model writes (C of the mode)."""
    mode: str               # the scale: notes whose accidental differs from it are out of mode
    low: int                # lowest and highest MIDI pitch allowed
    high: int
    out_of_mode: float      # at most this share of the notes so far may be out of the mode


class PitchRules:
    """Notes inside each item's range, and an out-of-mode note only while such notes stay at
    most `out_of_mode` of the row's notes (so none among the first ones). After a tie the note
    tied to may repeat its token whatever the count. Masks are cached per (item, chromatic ok).
    """

    def __init__(self, tokenizer, pitches: Sequence[Pitches]):
        self.itos, self.V, self.pitches = tokenizer.itos, tokenizer.vocab_size, list(pitches)
        specials = set(tokenizer.specials)
        kinds = [None if t in specials else token_kind(t) for t in self.itos]
        self.notes = [i for i, k in enumerate(kinds) if k == "note"]
        self.note_set = set(self.notes)
        self.tie = {i for i, k in enumerate(kinds) if k == "tie"}
        self._cache: dict[tuple, torch.Tensor] = {}
        self._out: dict[str, set[int]] = {}

    def _outside(self, mode: str) -> set[int]:
        if mode not in self._out:
            key = Key("C", mode)
            self._out[mode] = {i for i in self.notes if not note_pitch(self.itos[i], key)[1]}
        return self._out[mode]

    def _tensor(self, item: int, chromatic: bool) -> torch.Tensor:
        if (item, chromatic) not in self._cache:
            p, key = self.pitches[item], Key("C", self.pitches[item].mode)
            mask = torch.ones(self.V, dtype=torch.bool)
            for i in self.notes:
                midi, in_mode = note_pitch(self.itos[i], key)
                mask[i] = p.low <= midi <= p.high and (in_mode or chromatic)
            self._cache[(item, chromatic)] = mask
        return self._cache[(item, chromatic)]

    def begin(self, rows: torch.Tensor) -> torch.Tensor:
        self.items = rows.tolist()
        self.counts = [[0, 0] for _ in self.items]          # per row: notes, out-of-mode notes
        self.tied = [-1] * len(self.items)             # after a tie: the note tied from
        self.last = [-1] * len(self.items)
        return self._masks()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        for r, i in enumerate(tokens.tolist()):
            if i in self.tie:
                self.tied[r] = self.last[r]
            elif i in self.note_set:
                self.counts[r][0] += 1
                self.counts[r][1] += i in self._outside(self.pitches[self.items[r]].mode)
                self.tied[r], self.last[r] = -1, i
        return self._masks()

    def reorder(self, index: torch.Tensor) -> None:
        idx = index.tolist()
        self.items = [self.items[i] for i in idx]
        self.counts = [list(self.counts[i]) for i in idx]
        self.tied = [self.tied[i] for i in idx]
        self.last = [self.last[i] for i in idx]

    def _masks(self) -> torch.Tensor:
        rows = []
        for item, (n, out), tied in zip(self.items, self.counts, self.tied):
            mask = self._tensor(item, out + 1 <= self.pitches[item].out_of_mode * (n + 1))
            if tied >= 0 and not mask[tied]:
                mask = mask.clone()
                mask[tied] = True
            rows.append(mask)
        return torch.stack(rows)


@dataclass(frozen=True)
class Phrase:
    """The `Phrasing` weights of one item, in nats added to a token's log-prob."""
    restate: float = 0.0    # bars 5-6 of a part: towards its bars 1-2
    share: float = 0.0      # bars 7-8 of a later part: towards the first part's
    land: float = 0.0       # the last beat of a part's last bar: towards the tonic
    dotted: float = 0.0     # lengths off the eighth grid (dotted, broken, tuplets): + more, - fewer
    same: float = 0.0       # a bar of one pitch so far: against that pitch once more
    bar4: float = 0.0       # the last beat of a part's 4th bar: the tonic or dominant, + or -
    rest: float = 0.0       # rests: + more, - fewer
    fine: float = 0.0       # lengths off the sixteenth grid (3/4, 1/4, ...): + more, - fewer
    run: float = 0.0        # after three notes of one pitch in a row: against a fourth

    def __bool__(self) -> bool:
        return any(dataclasses.astuple(self))


class Phrasing:
    """Soft phrase rules for a form's 8-bar parts, as a bias on the log-probs (no mask):
    * bars 5-6 of a part lean towards restating its bars 1-2, and a later part's bars 7-8
      towards the first part's (a shared cadence), while what was written matches its model
      with at most one note or length changed;
    * the note on the last beat of a part's last bar leans towards the tonic, and on the same
      beat of its 4th bar towards or away from the tonic and dominant;
    * lengths off the eighth grid, lengths off the sixteenth grid and rests lean up or down;
    * a bar of one pitch, or a note written three times in a row, leans away from one more.
    It reads the rows of the `TuneConstraint` it follows in the chain (which updates them
    first). The weights are a `Phrase` per item (the writer's are `TuneWriter.PHRASING`); the
    figures they move are `poetry.tunes.style.PHRASES`."""

    def __init__(self, constraint: TuneConstraint, phrases: Sequence[Phrase],
                 beats: Sequence[int]):
        """`phrases` and `beats` (one beat of the meter in the constraint's grains): per item."""
        self.c, self.phrases, self.beats = constraint, list(phrases), list(beats)
        self.stoi = {t: i for i, t in enumerate(constraint.itos)}
        c = constraint
        self.off_grid = [i for i, d in c.dur_g.items() if d % c.grain] + c.ids["tuplet"]
        self.finer = [i for i, d in c.dur_g.items() if (2 * d) % c.grain]
        dominant = {i for i in c.ids["note"] if c.itos[i].lstrip("=")[0] in "Gg"}
        self.home = sorted(c.tonic | dominant)

    def begin(self, rows: torch.Tensor) -> None:
        self.items = rows.tolist()

    def step(self, tokens: torch.Tensor) -> None:
        return None

    def reorder(self, index: torch.Tensor) -> None:
        self.items = [self.items[i] for i in index.tolist()]

    @staticmethod
    def _model(row: _Row, ph: Phrase) -> tuple[Optional[tuple], float]:
        """The bar the current bar leans towards, and the weight."""
        b, p = row.part_bars, row.part
        want = (p, b - 4, ph.restate) if 4 <= b <= 5 else (0, b, ph.share) \
            if p >= 1 and b >= 6 else None
        if want is None or not want[2]:
            return None, 0.0
        for part, bar, content in row.played:
            if (part, bar) == want[:2]:
                return content, want[2]
        return None, 0.0

    @staticmethod
    def _next(row: _Row, model: tuple) -> Optional[str]:
        """The model bar's next token (a bar line after its last), while the bar so far
        matches it but for one change."""
        pos = len(row.content)
        if pos > len(model):
            return None
        changed = 0
        for a, b in zip(row.content, model):
            if a != b:
                if token_kind(a) != token_kind(b):
                    return None
                changed += 1
        return None if changed > 1 else model[pos] if pos < len(model) else "|"

    def bias(self):
        rows, ids, nats = [], [], []

        def add(r, toks, w):
            rows.extend([r] * len(toks)), ids.extend(toks), nats.extend([w] * len(toks))

        for r, (row, item) in enumerate(zip(self.c.rows, self.items)):
            ph = self.phrases[item]
            if row.done or row.must_end:
                continue
            if ph.dotted:
                add(r, self.off_grid, ph.dotted)
            if ph.rest:
                add(r, self.c.ids["rest"], ph.rest)
            if ph.fine:
                add(r, self.finer, ph.fine)
            notes = [t for t in row.content if token_kind(t) == "note"]
            if ph.same and len(notes) >= 2 and len(set(notes)) == 1 and notes[0] in self.stoi:
                add(r, [self.stoi[notes[0]]], -ph.same)
            elif ph.run and len(notes) >= 3 and notes[-1] == notes[-2] == notes[-3] and \
                    row.content[-1] == notes[-1] and notes[-1] in self.stoi:
                add(r, [self.stoi[notes[-1]]], -ph.run)
            if row.form is None:
                continue
            model, w = self._model(row, ph)
            tok = self._next(row, model) if model else None
            if tok == "|":                 # the bar is done: whichever bar line the form wants
                add(r, list(self.c.bar_ids.values()), w)
            elif tok is not None and tok in self.stoi:
                add(r, [self.stoi[tok]], w)
            # the next note's onset: after a note still waiting for its length, one eighth on
            onset = row.used + (self.c.grain if row.pending and row.role == 0 else 0)
            if row.tup_left or row.role != 0 or onset != row.full - self.beats[item]:
                continue
            if ph.land and row.part_bars == PART_BARS - 1:
                add(r, sorted(self.c.tonic), ph.land)
            elif ph.bar4 and row.part_bars == 3:
                add(r, self.home, ph.bar4)
        if not rows:
            return None
        return torch.tensor(rows), torch.tensor(ids), torch.tensor(nats, dtype=torch.float)


def tune_rules(tokenizer, meters: Sequence[str], prefixes: Sequence[Sequence[int]],
               on: bool = True, pitches: Optional[Sequence[Pitches]] = None,
               phrasing: Optional[Sequence[Phrase]] = None, **options):
    """The chain for a batch: the user's opening bars (shared `ForcePrefix`, checked beforehand
    with `TuneConstraint.check_prefix`), then, if `on`, the bar and form rules and, given
    `pitches` (one per item), the pitch rules and, given `phrasing` (a `Phrase` per item), the
    soft phrase rules; `options` go to `TuneConstraint`. With the rules off only the opening
    is forced (plain sampling after it)."""
    force = ForcePrefix(tokenizer.vocab_size, prefixes)
    if not on:
        return force
    form = TuneConstraint(tokenizer, meters, **options)
    phrasing = list(phrasing or ())
    beats = [int(beat_length(m) * form.grain) for m in meters]
    return AllOf([force, form, PitchRules(tokenizer, pitches) if pitches else None,
                  Phrasing(form, phrasing, beats) if any(phrasing) else None])
