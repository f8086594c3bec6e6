"""What makes a tune sound like the corpus's: its form (repeated 8-bar parts), its final note,
its notes outside the mode and its pitch range, measured on tune bodies; and the per-rhythm
figures the rules use (`STYLES`), measured on the training split:

    python -m poetry.tunes.style [--data cache/tunes] [--split train] [--table]
    # the JSON figures per rhythm and per rhythm @ meter; --table: `STYLES` as Python lines

Pitches are MIDI numbers in the tune's own key ("C" = 60): the corpus is stored in C of each
tune's mode, so a record's pitch is its stored pitch shifted back to the original key; a
generated tune's is read from its body in the requested key. A note is *out of the mode* when
its accidental differs from the key signature (the signature of a mode is its scale).
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from . import abc
from .abc import BARS, Key, note_pitch, parse_key
from .rules import PART_BARS, bar_hash

_NAMES = ("C", "^C", "D", "^D", "E", "F", "^F", "G", "^G", "A", "^A", "B")


@dataclass(frozen=True)
class Style:
    """A rhythm's corpus figures the rules apply (pitches as MIDI numbers in the tune's key)."""
    form: str           # default form: "AABB" where most tunes have repeated 8-bar parts
    low: int            # lowest and highest pitch (0.5 and 99.5 percentiles of the notes)
    high: int
    out_of_mode: float  # share of notes outside the mode


DANCES = ("jig", "reel", "hornpipe", "slip jig", "polka", "march", "strathspey")
# Measured with `python -m poetry.tunes.style --table` on the training split of cache/tunes
# (10 325 tunes; the figures are in docs/tunes.md).
STYLES: dict[str, Style] = {
    "song": Style("free", 53, 81, 0.029),
    "other": Style("free", 62, 83, 0.0076),
    "reel": Style("AABB", 60, 83, 0.011),
    "air": Style("AB", 60, 83, 0.0193),
    "jig": Style("AABB", 62, 83, 0.0124),
    "hornpipe": Style("AABB", 60, 83, 0.0118),
    "march": Style("AABB", 62, 84, 0.0063),
    "strathspey": Style("AABB", 62, 85, 0.0033),
    "slip jig": Style("AABB", 62, 81, 0.0095),
}
FALLBACK = Style("free", 55, 84, 0.01)


def style_of(rhythm: str) -> Style:
    return STYLES.get(rhythm, STYLES.get("other", FALLBACK))


# -- one note -----------------------------------------------------------------------------------
def pitch_name(midi: int) -> str:
    """MIDI -> an ABC note name (sharps), e.g. 55 -> G, and 83 -> b'."""
    octave, pc = divmod(midi, 12)
    name = _NAMES[pc]
    return name + "," * (5 - octave) if octave <= 5 else \
        name[:-1] + name[-1].lower() + "'" * (octave - 6)


# -- form ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    bars: int            # one pass; a leading pickup not counted, a short closing bar counted
    repeated: bool       # played twice: repeat signs (1st/2nd endings too) or written out


def _bar_records(tokens: list[str]) -> list[dict]:
    """Each bar: its hash, duration, closing bar line and the ending (1/2/0) it belongs to."""
    out, ending = [], 0
    endings = []
    for tok in tokens:
        if tok in ("[1", "[2"):
            ending = int(tok[1])
        elif tok in BARS:
            endings.append(ending)
            ending = 0 if ending == 2 or tok != "|" else ending
    bars = abc.bars(tokens)
    # a leading `|:` closes no bar: endings[] may hold one entry more than bars
    endings = endings[len(endings) - len(bars):] if len(endings) >= len(bars) else \
        endings + [0] * (len(bars) - len(endings))
    for (content, dur, close), end in zip(bars, endings):
        out.append({"hash": bar_hash(content), "dur": dur, "close": close, "ending": end})
    return out


def _sections(bars: list[dict]) -> list[list[dict]]:
    """Bars grouped at structural bar lines; a first ending's `:|` does not end its part."""
    out, cur = [], []
    for i, b in enumerate(bars):
        cur.append(b)
        nxt = bars[i + 1] if i + 1 < len(bars) else None
        if b["close"] in (":|", "::", "||", "|]", "|:") and not (
                b["close"] == ":|" and nxt is not None and nxt["ending"] == 2) and \
                not (b["ending"] == 2 and nxt is not None and nxt["ending"] == 2):
            out.append(cur)
            cur = []
        elif b["ending"] == 2 and (nxt is None or nxt["ending"] != 2):
            out.append(cur)                # a second ending closes its part
            cur = []
    return out + ([cur] if cur else [])


def _same(a: list[dict], b: list[dict]) -> bool:
    """Two 8-bar phrases are one part played twice when at least 5 of their bars agree."""
    return sum(x["hash"] == y["hash"] for x, y in zip(a, b)) >= 5


def parts(body: str, meter: str) -> list[Part]:
    full = abc.bar_length(meter)
    bars = _bar_records(abc.tokenize(body))
    if bars and bars[0]["dur"] < full and len(bars) > 1:
        bars = bars[1:]                    # the pickup
    out = []
    for sec in _sections(bars):
        signs = sec[-1]["close"] in (":|", "::") or any(b["ending"] for b in sec)
        if signs:
            out.append(Part(sum(b["ending"] != 2 for b in sec), True))
            continue
        k = 0
        while k < len(sec):                # written out: 8-bar phrases, a repeat as a pair
            a, b = sec[k:k + PART_BARS], sec[k + PART_BARS:k + 2 * PART_BARS]
            if len(a) == PART_BARS and len(b) == PART_BARS and _same(a, b):
                out.append(Part(PART_BARS, True))
                k += 2 * PART_BARS
            elif len(a) == PART_BARS:
                out.append(Part(PART_BARS, False))
                k += PART_BARS
            else:
                out.append(Part(len(sec) - k, False))
                break
    return out


def form_of(body: str, meter: str) -> str:
    """"AABB": two or more 8-bar parts, each repeated; "AB": two or more 8-bar parts, none
    repeated; else "free"."""
    ps = parts(body, meter)
    if len(ps) < 2 or any(p.bars != PART_BARS for p in ps):
        return "free"
    return "AABB" if all(p.repeated for p in ps) else "AB" if not any(p.repeated for p in ps) \
        else "free"


# -- one tune, and a set of tunes ---------------------------------------------------------------
def figures(body: str, meter: str, key: Key) -> dict:
    """A tune body in `key` -> its form, repeats, final, out-of-mode notes, range, length."""
    toks = abc.tokenize(body)
    notes = [note_pitch(t, key) for t in toks if abc.token_kind(t) == "note"]
    ps = parts(body, meter)
    return {"form": form_of(body, meter),
            "repeats": any(t in (":|", "::", "[1") for t in toks) or any(p.repeated for p in ps),
            "ends_tonic": bool(notes) and (notes[-1][0] - key.pc) % 12 == 0 and notes[-1][1],
            "notes": len(notes), "out_of_mode": sum(not ok for _, ok in notes),
            "low": min((p for p, _ in notes), default=None),
            "high": max((p for p, _ in notes), default=None),
            "pitches": [p for p, _ in notes], "bars": len(abc.bars(toks))}


def _percentile(xs: list[int], q: float) -> int:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(rows: Iterable[dict]) -> dict:
    """Figures of several tunes (from `figures`) -> shares, rates and the range."""
    rows = list(rows)
    n = len(rows)
    pitches = [p for r in rows for p in r["pitches"]]
    notes = sum(r["notes"] for r in rows)
    share = lambda f: round(sum(map(f, rows)) / n, 4) if n else None
    if not n or not pitches:
        return {"tunes": n}
    lo, hi = _percentile(pitches, 0.005), _percentile(pitches, 0.995)
    return {"tunes": n, "form_AABB": share(lambda r: r["form"] == "AABB"),
            "form_AB": share(lambda r: r["form"] == "AB"),
            "repeats": share(lambda r: r["repeats"]),
            "ends_tonic": share(lambda r: r["ends_tonic"]),
            "out_of_mode_rate": round(sum(r["out_of_mode"] for r in rows) / max(1, notes), 4),
            "tunes_with_out_of_mode": share(lambda r: r["out_of_mode"] > 0),
            "range_p0.5_p99.5": [pitch_name(lo), pitch_name(hi)], "range_midi": [lo, hi],
            "lowest_highest": [pitch_name(min(pitches)), pitch_name(max(pitches))],
            "notes_outside": None, "bars_median": statistics.median(r["bars"] for r in rows)}


def outside(rows: list[dict], style: Style) -> float:
    """Share of the notes of `rows` outside the style's range."""
    pitches = [p for r in rows for p in r["pitches"]]
    return round(sum(not style.low <= p <= style.high for p in pitches) / max(1, len(pitches)), 4)


def by_group(rows: list[dict], groups: list[str]) -> dict:
    table = collections.defaultdict(list)
    for r, g in zip(rows, groups):
        table[g].append(r)
    out = {}
    for g, rs in sorted(table.items(), key=lambda kv: -len(kv[1])):
        s = summary(rs)
        s["notes_outside"] = outside(rs, style_of(g.split(" @ ")[0])) if "tunes" in s else None
        out[g] = s
    return out


def derive(rhythm: str, s: dict) -> Style:
    """A rhythm's Style from its corpus summary. Default form: AABB for a dance (most of the
    corpus's jigs, hornpipes and marches are; its reels and strathspeys are mostly 8-bar parts
    written once, O'Neill's way, but are played AABB); else AB where most tunes are two 8-bar
    parts; else free."""
    form = "AABB" if rhythm in DANCES else "AB" if s["form_AB"] >= 0.5 else "free"
    return Style(form, *s["range_midi"], s["out_of_mode_rate"])


def record_figures(rec: dict) -> dict:
    """A corpus record (body in C of its mode) read back in its original key."""
    home, key = Key("C", rec["mode"]), parse_key(rec["key"])
    return figures(abc.transpose(rec["body"], home, key), rec["meter"], key)


def measure(records: list[dict]) -> dict:
    rows = [record_figures(r) for r in records]
    return {"by_rhythm": by_group(rows, [r["rhythm"] for r in records]),
            "by_rhythm_meter": by_group(rows, [f"{r['rhythm']} @ {r['meter']}" for r in records])}


def main(argv: Optional[list[str]] = None) -> int:
    from .data import DEFAULT_OUT, load_split
    ap = argparse.ArgumentParser(prog="python -m poetry.tunes.style",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--split", default="train")
    ap.add_argument("--table", action="store_true", help="print STYLES as Python lines")
    args = ap.parse_args(argv)
    table = measure(load_split(args.split, args.data))
    if args.table:
        for rhythm, s in table["by_rhythm"].items():
            print(f"    {rhythm!r}: {derive(rhythm, s)!r},".replace("'", '"'))
    else:
        print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
