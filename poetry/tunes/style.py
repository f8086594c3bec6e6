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
from fractions import Fraction
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


# -- phrases ------------------------------------------------------------------------------------
# What a player hears in a dance tune's 8-bar parts, measured per rhythm on the corpus and on
# generated tunes (bodies in C of their mode, where the tonic is C and the dominant G in every
# mode the corpus has). `PHRASES` names the figures; `phrase_rates` turns counts into rates.
PHRASES = {
    "part_ends_tonic": "parts that land on the tonic (the note on the last bar's last beat)",
    "bar4_tonic_or_dominant": "parts whose 4th bar lands on the tonic or the dominant",
    "restates_opening": "parts whose bars 5-6 restate bars 1-2 (exactly or one note changed)",
    "b_bars_from_a": "bars of the second part that are bars of the first (mean per tune)",
    "one_pitch_bars": "bars of one pitch repeated (two notes or more)",
    "repeated_note_bars": "bars with one pitch four times in a row",
    "rest_bars": "bars that hold a rest",
    "dotted_bars": "bars with a dotted or broken rhythm (a note off the eighth grid)",
}


def _bar_notes(content) -> list[tuple[Optional[str], Fraction]]:
    """A bar's notes and rests in order: (the note's letter, accidental and octave; None for a
    rest) and its length in eighths (a tuplet's notes scaled)."""
    out, left, factor = [], 0, Fraction(1)
    for tok in content:
        kind = abc.token_kind(tok)
        if kind == "tuplet":
            left, factor = int(tok[1]), Fraction(abc.TUPLETS[int(tok[1])], int(tok[1]))
        elif kind in ("note", "rest"):
            out.append([tok if kind == "note" else None, factor if left > 0 else Fraction(1)])
            left -= 1
        elif kind == "dur" and out:
            out[-1][1] = out[-1][1] * abc.token_duration(tok)
    return [tuple(x) for x in out]


def _phrase_parts(body: str, meter: str) -> list[list[dict]]:
    """The 8-bar parts of a body as played once: each a list of its bars (a first ending's bars
    in place), plus "end", the bar that closes the part the last time it is played."""
    full = abc.bar_length(meter)
    toks = abc.tokenize(body)
    recs = _bar_records(toks)
    for rec, (content, _, _) in zip(recs, abc.bars(toks)):
        rec["notes"] = _bar_notes(content)
    if recs and recs[0]["dur"] < full and len(recs) > 1:
        recs = recs[1:]
    out = []
    for sec in _sections(recs):
        if sec[-1]["close"] in (":|", "::") or any(b["ending"] for b in sec):
            once = [b for b in sec if b["ending"] != 2]
            if len(once) == PART_BARS:
                out.append({"bars": once, "end": sec[-1]})
            continue
        k = 0
        while k + PART_BARS <= len(sec):
            a, b = sec[k:k + PART_BARS], sec[k + PART_BARS:k + 2 * PART_BARS]
            twice = len(b) == PART_BARS and _same(a, b)
            out.append({"bars": a, "end": (b if twice else a)[-1]})
            k += PART_BARS * (2 if twice else 1)
    return out


def _cadence_pc(bar: dict, meter: str) -> Optional[int]:
    """The pitch class of the note sounding on the bar's last beat (a rest there: the note
    before it) — where a phrase lands, a pickup into the next phrase after it not counted."""
    at, onset, last = abc.bar_length(meter) - abc.beat_length(meter), Fraction(0), None
    for n, d in bar["notes"]:
        if onset > at and last is not None:
            break
        if n is not None:
            last = n
        onset += d
    return note_pitch(last, Key("C", "maj"))[0] % 12 if last else None


def _close(a: list[dict], b: list[dict]) -> bool:
    """Bars `b` restate bars `a`: the same notes and lengths, or one of them changed."""
    x = [n for bar in a for n in bar["notes"]]
    y = [n for bar in b for n in bar["notes"]]
    return len(x) == len(y) and sum(p != q for p, q in zip(x, y)) <= 1


def phrase_counts(body: str, meter: str) -> dict:
    """One tune body (in C of its mode) -> the counts behind `PHRASES`."""
    parts_ = _phrase_parts(body, meter)
    full = abc.bar_length(meter)
    bars = [b for p in parts_ for b in p["bars"]] or [
        {"notes": _bar_notes(c), "dur": d} for c, d, _ in abc.bars(abc.tokenize(body))]
    whole = [b for b in bars if b["dur"] == full]
    pitched = [[n for n, _ in b["notes"] if n is not None] for b in whole]
    shared = None
    if len(parts_) >= 2:
        first = {b["hash"] for b in parts_[0]["bars"]}
        shared = sum(b["hash"] in first for b in parts_[1]["bars"])
    return {"parts": len(parts_),
            "part_ends_tonic": sum(_cadence_pc(p["end"], meter) == 0 for p in parts_),
            "bar4_tonic_or_dominant": sum(_cadence_pc(p["bars"][3], meter) in (0, 7)
                                          for p in parts_),
            "restates_opening": sum(_close(p["bars"][:2], p["bars"][4:6]) for p in parts_),
            "b_bars_from_a": shared, "bars": len(whole),
            "one_pitch_bars": sum(len(ns) >= 2 and len(set(ns)) == 1 for ns in pitched),
            "repeated_note_bars": sum(any(len(set(ns[i:i + 4])) == 1 for i in range(len(ns) - 3))
                                      for ns in pitched),
            "rest_bars": sum(any(n is None for n, _ in b["notes"]) for b in whole),
            "dotted_bars": sum(any(d.denominator > 1 for _, d in b["notes"]) for b in whole)}


def phrase_rates(counts: list[dict]) -> dict:
    """Counts of several tunes -> the `PHRASES` rates (None where nothing was counted)."""
    total = lambda k: sum(c[k] for c in counts)
    parts_, bars = total("parts"), total("bars")
    two = [c["b_bars_from_a"] for c in counts if c["b_bars_from_a"] is not None]
    rate = lambda k, n: round(total(k) / n, 4) if n else None
    return {"tunes": len(counts), "parts": parts_,
            **{k: rate(k, parts_) for k in ("part_ends_tonic", "bar4_tonic_or_dominant",
                                            "restates_opening")},
            "b_bars_from_a": round(sum(two) / len(two), 3) if two else None,
            **{k: rate(k, bars) for k in ("one_pitch_bars", "repeated_note_bars", "rest_bars",
                                            "dotted_bars")}}


def phrase_range(counts: list[dict], n: int, draws: int = 1000, seed: int = 0,
                 share: float = 0.99) -> dict:
    """Where each rate of `n` tunes drawn from `counts` (a corpus's) falls: the middle `share`
    of its values over `draws` samples with replacement (0.5th to 99.5th percentile). A
    generated set of n tunes is "in the corpus's range" on a figure when its rate lies there,
    as 99 in 100 sets of the corpus's own tunes do."""
    import random
    rng = random.Random(seed)
    samples = [phrase_rates([rng.choice(counts) for _ in range(n)]) for _ in range(draws)]
    cut = (1 - share) / 2
    out = {}
    for k in PHRASES:
        xs = sorted(s[k] for s in samples if s[k] is not None)
        out[k] = [xs[int(cut * (len(xs) - 1))], xs[int((1 - cut) * (len(xs) - 1))]] \
            if xs else None
    return out


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
