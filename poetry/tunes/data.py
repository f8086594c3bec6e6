"""The tune corpus: folk tunes in ABC bundled with music21, normalised for the model.

    python -m poetry.tunes.data prepare [--out cache/tunes] [--workers 2] [--limit N]

Reads every `.abc` file of music21's corpus (essenFolksong, oneills1850, ryansMammoth, airdsAirs,
miscFolk, nottingham-dataset; josquin's part-songs fall out as multi-voice), splits files on `X:`,
keeps M: L: K: R: and the body, and normalises each tune (see `poetry.tunes.abc` for what is dropped):
every tune is transposed to tonic C keeping its mode (K:Cmaj, K:Cmin, K:Cdor, K:Cmix, ... as
folk-rnn did; the writer transposes back to the requested key), durations are rewritten in
L:1/8, bar lines are merged, every `:|` gets its `|:`, and the tune ends on `|]` or `:|`.
Essen gives only a key signature in K:, so its mode is read from the final note (folk songs end
on their tonic; a final on the 3rd of the signature's major is taken as a minor song's half
cadence). A tune must obey the generation rules (`poetry.tunes.rules`: every bar full but
the first and the last, balanced repeats); one whose only fault is short bars at section ends
(pickups notated per section) has its repeats written out and is re-barred from its first
pickup, which makes every bar full without changing a note. Tunes are dropped, each for a
counted reason: unsupported meter, key or symbols, several voices, bars or repeats the rules
reject, rare tokens, meters or modes, more than MAX_TOKENS tokens, duplicates, and music21
parse failures.
Split: sha1 of the normalised body -> train/validation/test 94/3/3. Outputs under --out:
{train,validation,test}.jsonl, stats.json, train_windows.npy (hashes of every 4 consecutive bars
of the training tunes, for the no-copy rule) and music21_check.json (a cache of the slow check).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

from shared.data import SPLITS, read_jsonl, split_of, write_jsonl, write_text

from . import abc
from .abc import AbcError, Event, Key
from .rules import check_tune, save_windows, window_hashes

DEFAULT_OUT = Path("cache/tunes")
_RHYTHM_WORDS = [(r"slip[ -]?jigg?", "slip jig"), (r"jigg?", "jig"), (r"reel", "reel"),
                 (r"hornpipe|clog", "hornpipe"), (r"strathspey|fling", "strathspey"),
                 (r"polka", "polka"), (r"waltz", "waltz"), (r"air", "air"),
                 (r"march|quick ?step|walkaround", "march"), (r"song", "song")]
# O'Neill's Music of Ireland is printed by dance type; tunes without R: get their section's.
_ONEILL = [(720, "air"), (1115, "jig"), (1175, "slip jig"), (1555, "reel"), (1781, "hornpipe")]
MIN_TOKEN_COUNT = 10       # a tune using a rarer token is dropped (keeps the vocabulary clean)
MIN_COUNT = 50             # meters and modes rarer than this in the corpus are dropped
MIN_RHYTHM = 20            # rarer rhythms become "other"
MAX_TOKENS = 512           # longer tunes (~3% of the corpus) are dropped: training cost


# -- structure: merged bar lines, balanced repeats, a closing final bar --------------------------
_FLAGS = {"|": "", "||": "d", "|]": "df", "|:": "s", ":|": "e", "::": "es"}


def _symbol(flags: set) -> str:
    return ("::" if {"e", "s"} <= flags else ":|" if "e" in flags else "|:" if "s" in flags
            else "|]" if "f" in flags else "||" if "d" in flags else "|")


def _merge_bars(events: list[Event]) -> list[Event]:
    """`| |:` -> `|:`, `:| |:` -> `::`; no leading plain bar; `|]` only at the end."""
    out: list[Event] = []
    for ev in events:
        if ev.kind == "bar" and out and out[-1].kind == "bar":
            out[-1].text = _symbol(set(_FLAGS[out[-1].text] + _FLAGS[ev.text]))
        elif not (ev.kind == "bar" and not out and "s" not in _FLAGS[ev.text]):
            out.append(ev)
    if out and out[0].kind == "bar":
        out[0].text = "|:"
    while out and out[-1].kind in ("ending", "tuplet"):
        out.pop()
    if not out or out[-1].kind != "bar":
        out.append(Event("bar", text="|]"))
    for ev in out:
        if ev.kind == "bar" and ev.text == "|]":
            ev.text = "||"
    last = out[-1]
    last.text = ":|" if "e" in _FLAGS[last.text] else "|]"
    return out


def _balance_repeats(events: list[Event]) -> list[Event]:
    """Give every `:|` its `|:` (ABC lets it repeat from the section start); drop unmatched `|:`."""
    opened, section = None, 0          # index of the open `|:` bar; where the section starts
    for i, ev in enumerate(list(events)):
        if ev.kind != "bar":
            continue
        flags = set(_FLAGS[ev.text])
        if "e" in flags and opened is None:
            if section == 0:
                events.insert(0, Event("bar", text="|:"))
                return _balance_repeats(events)
            prev = events[section - 1]
            prev.text = _symbol(set(_FLAGS[prev.text]) | {"s"})
        if "s" in flags and "e" not in flags and opened is not None:
            raise AbcError("a repeat opens inside another")
        opened = i if "s" in flags else None if "e" in flags else opened
        if flags:
            section = i + 1
    if opened is not None:
        ev = events[opened]
        ev.text = _symbol(set(_FLAGS[ev.text]) - {"s"})
        if opened == 0:
            events.pop(0)
    return events


def _fix_ties(events: list[Event]) -> None:
    """A tie joins two notes of one pitch; between different pitches it was a slur: drop it."""
    notes = [e for e in events if e.kind in ("note", "rest")]
    for a, b in zip(notes, notes[1:] + [None]):
        if a.tie and (b is None or b.kind != "note" or b.midi != a.midi):
            a.tie = False


# -- one tune -----------------------------------------------------------------------------------
def rhythm_of(r_field: str, title: str, source: str, number: int, meter: str) -> str:
    """Map the R: field (or the title's dance word, or O'Neill's section) to RHYTHMS."""
    if source == "essenFolksong":
        return "song"
    for text in (r_field, title):
        for pattern, name in _RHYTHM_WORDS:
            if re.search(rf"\b(?:{pattern})s?\b", text or "", re.I):
                return name
    if source == "oneills1850" and not r_field:
        return next((name for top, name in _ONEILL if number <= top), "other")
    return "other"


def _essen_key(events: list[Event], key: Key) -> Key:
    """Essen's K: is a key signature; the final note names the tonic and so the mode. A final
    on the signature's 3rd is a minor song's Phrygian half cadence (the 5th of the minor): minor."""
    last = next((e for e in reversed(events) if e.kind == "note"), None)
    sig = key.signature()
    if last is None or last.alter != sig[last.step % 7]:
        return key
    degree = (last.step % 7 - key.letter) % 7
    degree = 5 if degree == 2 else degree
    letter = (key.letter + degree) % 7
    return Key(abc.LETTERS[letter] + {1: "#", -1: "b", 0: ""}[sig[letter]],
               list(abc.MODES)[degree])


def split_tunes(text: str) -> list[str]:
    """A collection file -> tune texts, each starting at its X: line."""
    return [t for t in re.split(r"\n(?=X:)", "\n" + text) if t.startswith("X:")]


def normalise_tune(text: str, source: str) -> dict:
    """One tune's text -> record {source, number, meter, mode, key, rhythm, body}."""
    fields, body = abc.read_tune(text)
    if re.search(r"^\s*V:", text, re.M):
        raise AbcError("several voices")
    try:
        meter = abc.parse_meter(fields.get("M", ""))
        key = abc.parse_key(fields.get("K", ""))
    except ValueError as e:
        raise AbcError(str(e).split(":")[0]) from None
    unit = fields.get("L") or ("1/16" if Fraction(meter) < Fraction(3, 4) else "1/8")
    if not re.fullmatch(r"1/(1|2|4|8|16|32)", unit.replace(" ", "")):
        raise AbcError("unsupported L:")
    events = abc.read_body(body, key, Fraction(unit.replace(" ", "")), abc.bar_length(meter))
    if source == "essenFolksong" and not re.search(r"[a-z]", fields["K"][1:]):
        key = _essen_key(events, key)
    events = _balance_repeats(_merge_bars(events))
    _fix_ties(events)
    number = int(re.match(r"X:\s*(\d*)", text).group(1) or 0)
    body, expanded = _checked_body(events, key, meter)
    return {"source": source, "number": number, "meter": meter, "mode": key.mode,
            "key": str(key), "body": body, "expanded": expanded,
            "rhythm": rhythm_of(fields.get("R", ""), fields.get("T", ""), source, number, meter)}


def _checked_body(events: list[Event], key: Key, meter: str) -> tuple[str, bool]:
    """The normalised body in tonic C if it obeys the generation rules; when only short bars at
    section ends (pickups) break them, the repeats written out and the tune re-barred."""
    target = Key("C", key.mode)
    body = abc.emit(events, key, target)
    problems = check_tune(body, meter)
    if problems and all(p.startswith("bar ") for p in problems):
        try:
            body2 = abc.emit(_rebar(_expand_repeats(events), abc.bar_length(meter)), key, target)
        except AbcError:
            body2 = None
        if body2 and not check_tune(body2, meter):
            return body2, True
    if problems:
        raise AbcError("rules: " + problems[0])
    return body, False


def _expand_repeats(events: list[Event]) -> list[Event]:
    """Play order: each `|: ... :|` twice, a first ending only the first time."""
    out, i, start, second = [], 0, 0, False
    while i < len(events):
        ev = events[i]
        flags = _FLAGS.get(ev.text, "") if ev.kind == "bar" else ""
        if "e" in flags and not second:
            out.append(Event("bar", text="|"))
            i, second = start, True
            continue
        if ev.kind == "ending" and ev.text == "1" and second:
            while not (events[i].kind == "bar" and "e" in _FLAGS[events[i].text]):
                i += 1
            second = False
        elif "e" in flags:
            second = False
        if ev.kind == "bar":
            start = i + 1 if "s" in flags else start
            out.append(Event("bar", text="|"))
        elif ev.kind != "ending":
            out.append(ev)
        i += 1
    return out


def _rebar(events: list[Event], full: Fraction) -> list[Event]:
    """Bar lines anew: the first bar as long as the tune's pickup, then every `full`."""
    notes = [i for i, e in enumerate(events) if e.kind in ("note", "rest")]
    first = next((i for i, e in enumerate(events) if e.kind == "bar" and i > notes[0]),
                 len(events))
    target = abc._open_bar(events[:first]) or full
    out, acc, left, factor = [], Fraction(0), 0, Fraction(1)
    for ev in events:
        if ev.kind == "bar":
            continue
        out.append(ev)
        if ev.kind == "tuplet":
            left, factor = int(ev.text), Fraction(abc.TUPLETS[int(ev.text)], int(ev.text))
        elif ev.kind in ("note", "rest"):
            acc += ev.dur * (factor if left > 0 else 1)
            left -= 1
        if acc > target or (acc == target and left > 0):
            raise AbcError("a note crosses a bar line after re-barring")
        if acc == target and ev.kind in ("note", "rest"):
            out.append(Event("bar", text="|"))
            acc, target = Fraction(0), full
    if out[-1].kind != "bar":
        out.append(Event("bar", text="|"))
    out[-1].text = "|]"
    return out


def _reason(err: Exception) -> str:
    """A short category for the drop table: the message without its particulars."""
    text = re.sub(r"'[^']*'|`[^`]*`|\S*[\d|\[\]({]\S*|\S*:\S+", "…", str(err))
    return re.sub(r"(…\s*)+", "… ", text).strip()[:70]


# -- the corpus ---------------------------------------------------------------------------------
def corpus_files() -> list[tuple[str, str]]:
    """(collection, path) of every .abc file bundled with music21."""
    from music21 import corpus
    paths = sorted(str(p) for p in corpus.getPaths(fileExtensions=("abc",)))
    return [(os.path.basename(os.path.dirname(p)), p) for p in paths]


def _read_text(path: str) -> str:
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_corpus(limit: int | None = None) -> tuple[list[dict], collections.Counter, int]:
    """Normalised records of every tune that passes the rules, the drop reasons and the total."""
    records, dropped, total = [], collections.Counter(), 0
    for source, path in corpus_files():
        for text in split_tunes(_read_text(path)):
            total += 1
            try:
                rec = normalise_tune(text, source)
                records.append(rec)
            except AbcError as e:
                dropped[_reason(e)] += 1
            if limit and total >= limit:
                return records, dropped, total
    return records, dropped, total


def _filter(records: list[dict], dropped: collections.Counter) -> list[dict]:
    """Drop rare meters and modes, long tunes, tunes with rare tokens, and duplicates."""
    for field in ("meter", "mode"):
        counts = collections.Counter(r[field] for r in records)
        for r in records:
            if counts[r[field]] < MIN_COUNT:
                r["drop"] = f"rare {field}"
    rhythms = collections.Counter(r["rhythm"] for r in records)
    tokens = collections.Counter()
    for r in records:
        r["tokens"] = len(abc.tokenize(r["body"]))
        r["rhythm"] = r["rhythm"] if rhythms[r["rhythm"]] >= MIN_RHYTHM else "other"
        tokens.update(abc.tokenize(r["body"]))
    seen = set()
    for r in records:
        if r["tokens"] > MAX_TOKENS:
            r.setdefault("drop", f"more than {MAX_TOKENS} tokens")
        if any(tokens[t] < MIN_TOKEN_COUNT for t in abc.tokenize(r["body"])):
            r.setdefault("drop", f"a token seen < {MIN_TOKEN_COUNT} times")
        if (r["meter"], r["mode"], r["body"]) in seen:
            r.setdefault("drop", "duplicate")
        seen.add((r["meter"], r["mode"], r["body"]))
    dropped.update(r["drop"] for r in records if "drop" in r)
    return [r for r in records if "drop" not in r]


def tune_text(rec: dict, index: int = 1) -> str:
    """The full ABC text of a normalised record (tonic C)."""
    return abc.build_tune(rec["meter"], f"C{rec['mode']}", rec["rhythm"], rec["body"], index)


def _music21_error(text: str) -> str:
    """'' when music21 parses the tune into a score with notes, else the reason."""
    import warnings

    from music21 import converter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = converter.parse(text, format="abc", forceSource=True)
        return "" if score.flatten().notes else "music21: no notes"
    except Exception as e:                               # music21 raises many kinds
        return f"music21: {type(e).__name__}"


def music21_check(records: list[dict], cache: Path, workers: int) -> None:
    """Set r["m21"] to music21's complaint about each tune ('' = parses). Results are cached
    by sha1 of the tune text: parsing takes ~50 ms a tune."""
    done = json.loads(cache.read_text()) if cache.exists() else {}
    texts = {}
    for r in records:
        r["sha1"] = hashlib.sha1(r["body"].encode()).hexdigest()
        text = tune_text(r)
        r["check"] = hashlib.sha1(text.encode()).hexdigest()
        texts[r["check"]] = text
    new = [k for k in texts if k not in done]
    if new:
        print(f"music21 check of {len(new)} tunes with {workers} worker(s)...", file=sys.stderr)
        if workers > 1:
            import multiprocessing as mp
            with mp.get_context("spawn").Pool(workers) as pool:
                done.update(zip(new, pool.map(_music21_error, [texts[k] for k in new], 64)))
        else:
            done.update((k, _music21_error(texts[k])) for k in new)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(done))
    for r in records:
        r["m21"] = done[r["check"]]


def prepare(out: Path = DEFAULT_OUT, workers: int = 2, limit: int | None = None) -> dict:
    t0 = time.time()
    records, dropped, total = read_corpus(limit)
    records = _filter(records, dropped)
    music21_check(records, out / "music21_check.json", workers)
    dropped.update(r["m21"] for r in records if r["m21"])
    records = [r for r in records if not r["m21"]]
    out.mkdir(parents=True, exist_ok=True)
    splits = {s: [] for s in SPLITS}
    for r in records:
        row = {"id": f"{r['source']}-{r['number']}-{r['sha1'][:8]}", "source": r["source"],
               "meter": r["meter"], "mode": r["mode"], "key": r["key"], "rhythm": r["rhythm"],
               "body": r["body"], "tokens": r["tokens"], "expanded": r["expanded"]}
        splits[split_of(r["body"], (94, 3, 3))].append(row)
    for name, rows in splits.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    count = collections.Counter
    stats = {"tunes_read": total, "kept": len(records),
             "splits": {k: len(v) for k, v in splits.items()},
             "dropped": dict(dropped.most_common()),
             "by_source": dict(count(r["source"] for r in records).most_common()),
             "meters": dict(count(r["meter"] for r in records).most_common()),
             "modes": dict(count(r["mode"] for r in records).most_common()),
             "rhythms": dict(count(r["rhythm"] for r in records).most_common()),
             "repeats_written_out": sum(r["expanded"] for r in records),
             "tokens": sum(r["tokens"] for r in records),
             "vocabulary": len({t for r in records for t in abc.tokenize(r["body"])})}
    save_windows(out / "train_windows.npy", training_windows(out))
    stats["seconds"] = round(time.time() - t0, 1)
    write_text(out / "stats.json", json.dumps(stats, indent=1, ensure_ascii=False))
    return stats


def load_split(name: str, out: Path = DEFAULT_OUT) -> list[dict]:
    return read_jsonl(Path(out) / f"{name}.jsonl", "python -m poetry.tunes.data prepare")


def training_windows(out: Path = DEFAULT_OUT, n: int = 4) -> set[int]:
    """Hashes of every n consecutive bars of the training tunes (for the copy check)."""
    windows: set[int] = set()
    for row in load_split("train", out):
        windows |= window_hashes(row["body"], n)
    return windows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.tunes.data",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="normalise music21's ABC corpus into JSONL splits")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workers", type=int, default=2, help="processes for the music21 check")
    p.add_argument("--limit", type=int, default=None, help="read only the first N tunes")
    args = ap.parse_args(argv)
    stats = prepare(args.out, args.workers, args.limit)
    print(json.dumps(stats, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
