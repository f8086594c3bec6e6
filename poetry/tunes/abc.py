"""ABC music notation for the tune task: keys and meters, normalisation, music tokens.

A *normalised body* is the note part of a tune, one line without spaces, in units of L:1/8, with
only these symbols (each one token of `TOKEN_PATTERN`):
  bar lines `|` `||` `|]` `|:` `:|` `::`, endings `[1` `[2`, tuplets `(2` `(3` `(4`,
  notes = accidental + letter + octave marks (`^c'`, `_B,`), rest `z`, durations (`2`, `/2`, `3/2`),
  tie `-`.
Accidentals are written out on every note that differs from the key signature (and on every later
note of the same letter in that bar), so a note's pitch never depends on an earlier note: that
keeps tokens local for the model and reads the same under both ABC accidental conventions
(music21 does not carry accidentals through a bar for ABC 1.x input; ABC 2.1 does).
Dropped on the way in: titles and other fields, lyrics, comments, chord symbols, annotations,
decorations (`!trill!`, `~`, `.`, the letters h-w and H-W), slurs and grace notes; broken rhythm
(`>`, `<`) is written out as durations; a chord keeps its highest note (the melody).
Unsupported input raises `AbcError` (a ValueError).
METERS and KEY_MODES are what the prepared corpus holds (rarer ones are dropped there), so
`parse_meter` / `parse_key` refuse what a model trained on it has never seen.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, NamedTuple

from shared.cli import check_text

UNIT = Fraction(1, 8)                        # the single default note length, L:1/8
LETTERS = "CDEFGAB"
_NAT_PC = (0, 2, 4, 5, 7, 9, 11)
MODES = {"maj": 0, "dor": 1, "phr": 2, "lyd": 3, "mix": 4, "min": 5, "loc": 6}  # scale degree
KEY_MODES = ("maj", "min", "dor", "mix")
_FULL = {"major": "maj", "minor": "min", "ionian": "maj", "aeolian": "min", "dorian": "dor",
         "phrygian": "phr", "lydian": "lyd", "mixolydian": "mix", "locrian": "loc"}
METERS = ("2/4", "3/4", "4/4", "2/2", "6/8", "9/8", "3/8", "6/4", "3/2", "4/2")
_ACC = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
_ACC_TEXT = {v: k for k, v in _ACC.items()}
BARS = ("|", "||", "|]", "|:", ":|", "::")
TOKEN_PATTERN = (r"\|\]|\|\||\|:|:\||::|\||\[[12]|\([234]|(?:\^\^?|__?|=)?[A-Ga-g][,']*|z"
                 r"|\d*/\d+|\d+|-")
_TOKEN_RE = re.compile(TOKEN_PATTERN)
TUPLETS = {2: 3, 3: 2, 4: 3}                 # (p -> q: p notes in the time of q


class AbcError(ValueError):
    """Input that is not ABC this module supports; the message says what and where."""


# -- keys and meters --------------------------------------------------------------------------
class Key(NamedTuple):
    tonic: str          # "D", "F#", "Bb"
    mode: str           # one of MODES

    def __str__(self) -> str:
        return self.tonic + self.mode

    @property
    def letter(self) -> int:
        return LETTERS.index(self.tonic[0])

    @property
    def pc(self) -> int:
        return (_NAT_PC[self.letter] + {"#": 1, "b": -1, "": 0}[self.tonic[1:]]) % 12

    def fifths(self) -> int:
        """Sharps (> 0) or flats (< 0) in the key signature."""
        letter = (self.letter - MODES[self.mode]) % 7            # the relative major's letter
        alter = (self.pc - _NAT_PC[MODES[self.mode]] - _NAT_PC[letter] + 6) % 12 - 6
        return (0, 2, 4, -1, 1, 3, 5)[letter] + 7 * alter

    def signature(self) -> dict[int, int]:
        """Letter index -> alteration the key signature gives it."""
        n = self.fifths()
        order = "FCGDAEB" if n > 0 else "BEADGCF"
        return {i: (1 if n > 0 else -1) if LETTERS[i] in order[:abs(n)] else 0 for i in range(7)}


def parse_key(text: str) -> Key:
    """`D`, `Dmaj`, `F#m`, `Ador`, `E Minor`, `Bbmix` -> Key (the tonic in either case: `dmaj`
    too, as `D minor` is); ValueError for anything else."""
    m = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)\s*", text or "")
    word = m.group(3).lower() if m else ""
    full = [v for k, v in _FULL.items() if len(word) >= 3 and k.startswith(word)]
    mode = "maj" if not word else "min" if word == "m" else full[0] if full else None
    if m is None or mode not in KEY_MODES:
        raise ValueError(f"unknown key {text!r}: use a tonic A-G with optional # or b and a mode "
                         f"({', '.join(KEY_MODES)}), e.g. D, Dmaj, Ador, Emin, Gmix")
    key = Key(m.group(1).upper() + m.group(2), mode)
    if abs(key.fifths()) > 7:
        raise ValueError(f"key {text!r} needs {abs(key.fifths())} sharps or flats: "
                         f"use its enharmonic twin")
    return key


def parse_meter(text: str) -> str:
    """`6/8`, `C` (= 4/4), `C|` (= 2/2) -> canonical 'n/d'; ValueError for other meters."""
    t = check_text("" if text is None else text, "the meter").strip()
    t = {"C": "4/4", "C|": "2/2"}.get(t, t.replace(" ", ""))
    if t not in METERS:
        raise ValueError(f"unknown meter {text!r}: supported meters are C, C|, "
                         + ", ".join(METERS))
    return t


def bar_length(meter: str) -> Fraction:
    """Duration of a full bar in units of L:1/8."""
    num, den = parse_meter(meter).split("/")
    return Fraction(int(num), int(den)) / UNIT


def beat_length(meter: str) -> Fraction:
    """One beat in units of L:1/8: a dotted quarter in 6/8, 9/8 and 3/8, a half in 2/2 and
    4/2 (and 3/2), else a quarter."""
    num, den = map(int, parse_meter(meter).split("/"))
    return Fraction(3) if den == 8 and num % 3 == 0 else Fraction(8 // den)


# -- reading ABC into events --------------------------------------------------------------------
@dataclass
class Event:
    kind: str                  # note | rest | bar | ending | tuplet
    step: int = 0              # note: diatonic step, C4 (ABC "C") = 28
    alter: int = 0             # note: semitones
    dur: Fraction = Fraction(1)
    tie: bool = False
    text: str = ""             # bar: its normalised symbol; ending/tuplet: the number

    @property
    def midi(self) -> int:
        return 12 * (self.step // 7 + 1) + _NAT_PC[self.step % 7] + self.alter


_LEX = re.compile(r"""
 (?P<skip>\s+|\\|`|\$|y|"[^"]*"|![^!\n]*!|\+[^+\n]*\+|[.~h-wH-W]|\{[^}]*\}|\((?!\d)|\))
|(?P<field>\[[A-Za-z]:[^\]\n]*\])
|(?P<bar>::+|\[?:*\|[|\]]*:*)(?P<bnum>\[?[12](?![\d,-]))?
|(?P<ending>\[[12](?![\d,-]))
|(?P<tuplet>\((?P<tp>\d)(?::(?P<tq>\d*))?(?::(?P<tr>\d*))?)
|(?P<chord>\[[^\]|]*\])(?P<cdur>\d*/*\d*)
|(?P<note>(?P<acc>\^\^|\^|__|_|=)?(?P<let>[A-Ga-g])(?P<oct>[,']*)(?P<dur>\d*/*\d*))
|(?P<rest>[zx](?P<rdur>\d*/*\d*))
|(?P<broken>[<>]{1,3})
|(?P<tie>-)
""", re.X)
_NOTE_RE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)(\d*/*\d*)")
_BROKEN = {1: Fraction(1, 2), 2: Fraction(1, 4), 3: Fraction(1, 8)}


def _duration(text: str) -> Fraction:
    m = re.fullmatch(r"(\d*)(/*)(\d*)", text)
    if not m:
        raise AbcError(f"bad duration {text!r}")
    num = int(m.group(1) or 1)
    den = int(m.group(3)) if m.group(3) else 2 ** len(m.group(2))
    if m.group(3) and len(m.group(2)) != 1:
        raise AbcError(f"bad duration {text!r}")
    if num == 0 or den == 0:
        raise AbcError(f"bad duration {text!r}: a note lasts more than nothing")
    return Fraction(num, den)


def _bar_symbol(text: str) -> str:
    start, end = text.endswith(":"), text.startswith(":")
    return ("::" if start and end else ":|" if end else "|:" if start else "|]"
            if text.endswith("]") else "||" if ("||" in text or "[|" in text) else "|")


class _Reader:
    """Turns one ABC body into events; keeps the bar's accidentals (ABC 2.1: per pitch)."""

    def __init__(self, key: Key, unit: Fraction):
        self.sig, self.scale = key.signature(), unit / UNIT
        self.events: list[Event] = []
        self.carried: dict[int, int] = {}
        self.next_factor = Fraction(1)

    def note(self, acc, letter, octave, dur) -> Event:
        step = LETTERS.index(letter.upper()) + 7 * (4 + letter.islower())
        step += 7 * (octave.count("'") - octave.count(","))
        if acc:
            self.carried[step] = _ACC[acc]
        alter = self.carried.get(step, self.sig[step % 7])
        return Event("note", step, alter, _duration(dur) * self.scale)

    def add(self, ev: Event) -> None:
        if ev.kind in ("note", "rest"):
            ev.dur *= self.next_factor
            self.next_factor = Fraction(1)
        elif ev.kind == "bar":
            self.carried = {}
        self.events.append(ev)

    def lex(self, line: str) -> None:
        pos = 0
        while pos < len(line):
            m = _LEX.match(line, pos)
            if not m:
                context = line[max(0, pos - 8):pos + 8]
                raise AbcError(f"unsupported symbol {line[pos]!r} in {context!r}")
            pos = m.end()
            kind = m.lastgroup if m.lastgroup not in ("bnum", "cdur") else (
                "bar" if m.lastgroup == "bnum" else "chord")
            getattr(self, "_" + kind)(m)

    def _skip(self, m) -> None:
        pass

    def _field(self, m) -> None:
        if m.group()[1] in "KMLV":
            raise AbcError(f"inline field {m.group()} (key, meter or voice change)")

    def _bar(self, m) -> None:
        self.add(Event("bar", text=_bar_symbol(m.group("bar"))))
        if m.group("bnum"):
            self.add(Event("ending", text=m.group("bnum")[-1]))

    def _ending(self, m) -> None:
        self.add(Event("ending", text=m.group()[-1]))

    def _tuplet(self, m) -> None:
        p, q, r = int(m.group("tp")), m.group("tq"), m.group("tr")
        if p not in TUPLETS or (q and int(q) != TUPLETS[p]) or (r and int(r) != p):
            raise AbcError(f"tuplet {m.group()} is not supported")
        self.add(Event("tuplet", text=str(p)))

    def _chord(self, m) -> None:
        notes = [self.note(*n.groups()) for n in _NOTE_RE.finditer(m.group("chord"))]
        if not notes:
            raise AbcError(f"empty chord {m.group()}")
        top = max(notes, key=lambda e: e.midi)
        top.dur *= _duration(m.group("cdur"))
        self.add(top)

    def _note(self, m) -> None:
        self.add(self.note(*m.group("acc", "let", "oct", "dur")))

    def _rest(self, m) -> None:
        self.add(Event("rest", dur=_duration(m.group("rdur")) * self.scale))

    def _broken(self, m) -> None:
        last = self.events[-1] if self.events else None
        if last is None or last.kind not in ("note", "rest"):
            raise AbcError("broken rhythm without a note before it")
        short = _BROKEN[len(m.group())]
        first = 2 - short if m.group()[0] == ">" else short
        last.dur *= first
        self.next_factor = 2 - first

    def _tie(self, m) -> None:
        if self.events and self.events[-1].kind == "note":
            self.events[-1].tie = True


def _open_bar(events: list[Event]) -> Fraction:
    """Duration of the events after the last bar line (tuplets counted at their real length)."""
    i = len(events)
    while i and events[i - 1].kind != "bar":
        i -= 1
    dur, left, factor = Fraction(0), 0, Fraction(1)
    for ev in events[i:]:
        if ev.kind == "tuplet":
            left, factor = int(ev.text), Fraction(TUPLETS[int(ev.text)], int(ev.text))
        elif ev.kind in ("note", "rest"):
            dur += ev.dur * (factor if left > 0 else 1)
            left -= 1
    return dur


def read_body(body: str, key: Key, unit: Fraction = UNIT, bar: Fraction | None = None
              ) -> list[Event]:
    """Parse an ABC body (several lines allowed) into events with absolute pitches. With `bar`
    (a full bar in units of L:1/8), a line ending on a complete bar gets its bar line: Essen
    ends phrases with a line break instead of `|` when the phrase ends with the bar."""
    r = _Reader(key, unit)
    for line in body.splitlines():
        line = line.split("%", 1)[0]
        if re.match(r"\s*[A-Za-z+]:", line):
            if re.match(r"\s*[KMLV]:", line):
                raise AbcError(f"field inside the body: {line.strip()!r}")
            continue
        r.lex(line)
        if bar and not line.rstrip().endswith("\\") and _open_bar(r.events) == bar:
            r.add(Event("bar", text="|"))
    return r.events


# -- writing events as a normalised body ---------------------------------------------------------
def _dur_text(d: Fraction) -> str:
    if d <= 0 or d.denominator & (d.denominator - 1):
        raise AbcError(f"duration {d} is not a binary fraction of L:1/8")
    n, m = d.numerator, d.denominator
    return "" if d == 1 else str(n) if m == 1 else f"/{m}" if n == 1 else f"{n}/{m}"


def _note_text(step: int, alter: int, acc: bool) -> str:
    octave, letter = divmod(step, 7)
    name = LETTERS[letter].lower() + "'" * (octave - 5) if octave >= 5 else \
        LETTERS[letter] + "," * (4 - octave)
    return (_ACC_TEXT[alter] if acc else "") + name


def _offset(key: Key) -> tuple[int, int]:
    """(diatonic steps, semitones) from C up or down to key's tonic, within -6..+5 semitones."""
    semis = key.pc if key.pc <= 5 else key.pc - 12
    return min((key.letter, key.letter - 7), key=lambda s: abs(s - semis * 7 / 12)), semis


def _shift(src: Key, dst: Key) -> tuple[int, int]:
    """Transposition src -> dst through C, so C -> X and X -> C are exact inverses."""
    (a, b), (c, d) = _offset(src), _offset(dst)
    return c - a, d - b


def semitones(src: Key, dst: Key) -> int:
    """How far `transpose(body, src, dst)` moves every pitch, in semitones."""
    return _shift(src, dst)[1]


def _emit(events: list[Event], key: Key, steps: int = 0, semis: int = 0) -> str:
    sig, out, marked = key.signature(), [], set()
    for ev in events:
        if ev.kind == "bar":
            out.append(ev.text)
            marked.clear()
        elif ev.kind in ("ending", "tuplet"):
            out.append(("[" if ev.kind == "ending" else "(") + ev.text)
        elif ev.kind == "rest":
            out.append("z" + _dur_text(ev.dur))
        else:
            step = ev.step + steps
            alter = ev.midi + semis - Event("note", step).midi
            if abs(alter) > 2:
                raise AbcError(f"cannot spell a note after transposing to {key}")
            acc = alter != sig[step % 7] or step % 7 in marked
            if acc:
                marked.add(step % 7)
            out.append(_note_text(step, alter, acc) + _dur_text(ev.dur) + "-" * ev.tie)
    return "".join(out)


def emit(events: list[Event], src: Key, dst: Key | None = None) -> str:
    """Events read in key `src` -> normalised body text in key `dst` (transposed)."""
    return _emit(events, dst or src, *_shift(src, dst or src))


def normalise(body: str, key: Key, unit: Fraction = UNIT, target: Key | None = None) -> str:
    """Raw ABC (a tune body or a fragment such as an opening bar) in `key` with default length
    `unit` -> normalised body, transposed to `target`. Raises AbcError for unsupported input."""
    return emit(read_body(body, key, unit), key, target)


def transpose(body: str, src: Key, dst: Key) -> str:
    """A normalised body in key `src` rewritten in key `dst` (nearest octave, spelled for dst)."""
    return normalise(body, src, UNIT, dst)


# -- tokens -------------------------------------------------------------------------------------
def tokenize(body: str) -> list[str]:
    """Music tokens of a body; any stretch the pattern does not match stays one piece (-> <unk>)."""
    out, pos = [], 0
    for m in _TOKEN_RE.finditer(body):
        if m.start() > pos:
            out.append(body[pos:m.start()])
        out.append(m.group())
        pos = m.end()
    return out + ([body[pos:]] if pos < len(body) else [])


def token_kind(tok: str) -> str | None:
    """bar | ending | tuplet | note | rest | dur | tie, or None for an unknown piece."""
    if tok in BARS:
        return "bar"
    if _TOKEN_RE.fullmatch(tok) is None:
        return None
    c = tok[0]
    return ("ending" if c == "[" else "tuplet" if c == "(" else "rest" if c == "z" else
            "tie" if c == "-" else "dur" if c.isdigit() or c == "/" else "note")


def note_pitch(tok: str, key: Key) -> tuple[int, bool]:
    """(MIDI pitch, in the mode) of one note token of a normalised body in `key`: accidentals are
    written out, so a token's pitch never depends on the notes before it; a note is in the mode
    when its alteration is the key signature's (a mode's signature is its scale)."""
    m = _NOTE_RE.fullmatch(tok)
    if m is None:
        raise AbcError(f"not a note: {tok!r}")
    acc, letter, octave, _ = m.groups()
    step = LETTERS.index(letter.upper()) + 7 * (4 + letter.islower())
    step += 7 * (octave.count("'") - octave.count(","))
    sig = key.signature()[step % 7]
    alter = sig if not acc else _ACC[acc]
    return Event("note", step, alter).midi, alter == sig


def token_duration(tok: str) -> Fraction | None:
    return _duration(tok) if token_kind(tok) == "dur" else None


def make_tokenizer(bodies: Iterable[str], specials: Iterable[str] = (), min_freq: int = 1):
    from shared.tokenizers import RegexTokenizer
    return RegexTokenizer.train(TOKEN_PATTERN, bodies, specials, min_freq)


def bars(tokens: list[str]) -> list[tuple[tuple[str, ...], Fraction, str]]:
    """(content tokens without endings, duration in units of L, closing bar) for each bar.
    A tuplet `(p` scales its next p notes or rests by q/p; a trailing unclosed bar is kept
    with closing symbol ''."""
    out, content, dur, last, left, factor = [], [], Fraction(0), Fraction(1), 0, Fraction(1)
    for tok in tokens:
        kind = token_kind(tok)
        if kind == "bar":
            if content:                        # a leading `|:` closes no bar
                out.append((tuple(content), dur, tok))
            content, dur = [], Fraction(0)
            continue
        if kind != "ending":
            content.append(tok)
        if kind == "tuplet":
            left, factor = int(tok[1]), Fraction(TUPLETS[int(tok[1])], int(tok[1]))
        elif kind in ("note", "rest"):
            last = factor if left > 0 else Fraction(1)
            left -= 1
            dur += last
        elif kind == "dur":
            dur += (_duration(tok) - 1) * last
    return out + ([(tuple(content), dur, "")] if content else [])


def build_tune(meter: str, key: str | Key, rhythm: str, body: str, index: int = 1) -> str:
    """A complete ABC tune; the body is broken into lines of four bars for readability."""
    lines, count, toks = [""], 0, tokenize(body)
    for i, tok in enumerate(toks):
        lines[-1] += tok
        count += tok in BARS
        if tok in BARS and count % 4 == 0 and i + 1 < len(toks) and toks[i + 1][0] != "[":
            lines.append("")
    head = [f"X:{index}", f"T:Untitled {index}", f"M:{meter}", "L:1/8", f"R:{rhythm}",
            f"K:{key}"]
    return "\n".join(head + lines) + "\n"


def read_tune(text: str) -> tuple[dict[str, str], str]:
    """Header fields up to `K:` (letter -> value, first occurrence) and the body after it."""
    fields, body = {}, []
    for line in text.splitlines():
        m = re.match(r"\s*([A-Za-z]):(.*)", line)
        if "K" in fields:
            body.append(line)
        elif m:
            fields.setdefault(m.group(1), m.group(2).split("%")[0].strip())
    return fields, "\n".join(body).strip()
