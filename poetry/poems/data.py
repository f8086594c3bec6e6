"""The poem corpus: regular Tang and Song poems from npm `chinese-poetry@2.0.1`, simplified.

    python -m poetry.poems.data prepare [--tarball PATH] [--out cache/poems] [--force]
    python -m poetry.poems.data stats   [--out cache/poems]      # the data/README.md section

Writes train/validation/test.jsonl ({id, title, author, form, lines, body}) of Tang poems and
train_song/validation_song/test_song.jsonl of Song poems (split by the same key, so a Song copy
of a Tang poem lands in the same split), stats.json, repetition.json (limits measured on the
Tang training poems, poetry/poems/repetition.py), themes.json (characters associated with
title characters, poetry/poems/themes.py), keywords.json (the planner's word vocabulary and
theme expansions from the Tang and Song training poems, poetry/poems/planning.py; every record
gets its "keywords", one per line) and lines.npz.xz: every distinct 5- or
7-character line of every Tang and Song poem (any form, any split) for the novelty rule
(poetry/poems/novelty.py). Files are read straight from the tarball; nothing is extracted.
"""
from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator

from shared.data import SPLITS, read_jsonl, write_jsonl, write_text
from shared.data import split_of as shared_split

from .format import prepared
from .novelty import LineIndex
from .planning import FUNCTION as _FUNCTION
from .planning import Planner
from .repetition import Limits
from .themes import Associations
from .verse import FORMS, form_of, is_cjk

PACKAGE, VERSION = "chinese-poetry", "2.0.1"
INTEGRITY = ("sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/"
             "EQ3lfJ//25K8p3uHNg==")
TARBALL = Path("cache/npm") / f"{PACKAGE}-{VERSION}.tgz"
OUT = Path("cache/poems")
SONG = tuple(f"{s}_song" for s in SPLITS)        # Song splits, by the same keys as the Tang ones
OUTPUTS = tuple(f"{s}.jsonl" for s in SPLITS + SONG) + ("stats.json", "lines.npz.xz",
                                                        "repetition.json", "themes.json",
                                                        "keywords.json")
_MEMBER = {d: re.compile(rf"package/dist/quantangshi/poet\.{d}\.\d+\.json")
           for d in ("tang", "song")}
# Variant forms (异体字) OpenCC t2s leaves behind, found by counting the characters of the kept
# poems outside GB 2312: the most frequent ones with one standard form, mapped to it. Rare
# variants and characters with a meaning of their own (祇, 谿, 翛) stay.
VARIANTS = dict(zip(
    "隠簷疎鴈鶑頼遶髪粧浄鬰鬭徧慙僊賸髙蘂馿媿巵臯鼇閙煖牋寛餠嬾罇椀鬬妬隣怱踈鳯邉畧歳揺覊峩朶"
    "悮欵鏁犂覩羮檝潄穉筯猨堦牕凴",
    "隐檐疏雁莺赖绕发妆净郁斗遍惭仙剩高蕊驴愧卮皋鳌闹暖笺宽饼懒樽碗斗妒邻匆疏凤边略岁摇羁峨朵"
    "误款锁犁睹羹楫漱稚箸猿阶窗凭"))

# Editorial notes such as （一作「東風」） give variant readings: dropping them keeps the main
# text. Quote and title marks are punctuation around real poem characters.
_NOTE = re.compile(r"（[^（）]*）|\([^()]*\)")
_QUOTES = re.compile(r"[「」『』《》〈〉“”‘’\s]")
_SEP = re.compile(r"([，。？！；：、,.?!;:])")
_STOPS = set("。？！；")        # marks that may close a couplet (an even line)


def integrity(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def ensure_tarball(path: Path = TARBALL) -> Path:
    """The verified tarball at `path`, fetched with `npm pack` if absent."""
    path = Path(path)
    if not path.exists():
        if shutil.which("npm") is None:
            raise SystemExit(f"{path} is missing and npm is not installed: run `npm pack "
                             f"{PACKAGE}@{VERSION}` on a machine with npm and copy the file there")
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"fetching {PACKAGE}@{VERSION} with npm pack (~85 MB)...", file=sys.stderr)
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination",
                        str(path.parent)], check=True, stdout=subprocess.DEVNULL)
        fetched = path.parent / f"{PACKAGE}-{VERSION}.tgz"
        if fetched != path:
            fetched.replace(path)
    got = integrity(path)
    if got != INTEGRITY:
        raise SystemExit(f"{path}: integrity {got} does not match {PACKAGE}@{VERSION}'s "
                         f"{INTEGRITY}; delete it and run the command again")
    return path


def iter_poems(tarball: Path, dynasty: str = "tang") -> Iterator[dict]:
    """Raw Tang or Song poem records ({id, title, author, paragraphs}) in a stable order."""
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if _MEMBER[dynasty].fullmatch(m.name)]
        members.sort(key=lambda m: int(m.name.split(".")[-2]))
        for m in members:
            yield from json.load(tar.extractfile(m))


def segments(text: str) -> list[tuple[str, str]]:
    """(line, closing mark) pairs of a poem text after notes and quote marks are removed."""
    prev = None
    while prev != text:                   # notes can nest one level
        prev, text = text, _NOTE.sub("", text)
    parts = _SEP.split(_QUOTES.sub("", text))
    out = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
    if parts[-1]:
        out.append((parts[-1], ""))
    return out


def regular(segs: list[tuple[str, str]]) -> tuple[list[str] | None, str]:
    """The lines of a regular poem, or None and the reason it is not one."""
    lines = [s for s, _ in segs]
    if form_of(lines) is None:
        return None, "not 4/8 lines of 5/7 characters"
    if not all(is_cjk(c) for line in lines for c in line):
        return None, "unclean characters"
    if any(mark not in _STOPS for _, mark in segs[1::2]):
        return None, "couplet punctuation"
    return lines, ""


def clean_title(title: str, limit: int = 10) -> str:
    """CJK characters of the title's main part: no notes, no '十首 一' numbering."""
    title = _NOTE.sub("", re.sub(r"[\[［〔【].*?[\]］〕】]", "", title)).strip()
    title = title.split()[0] if title.split() else ""
    title = re.sub(r"[一二三四五六七八九十百]+首$", "", "".join(c for c in title if is_cjk(c)))
    title = re.sub(r"其[一二三四五六七八九十]+$", "", title)
    return title[:limit]


def body(lines: list[str]) -> str:
    """`line1，line2。line3，line4。` — the punctuated poem, as the model writes it."""
    return "".join(line + ("，" if i % 2 == 0 else "。") for i, line in enumerate(lines))


def split_of(lines: list[str]) -> str:
    """96/2/2 % by the first couplet: stable across runs, machines and corpus order. Keyed on
    the couplet, not the whole body, so variant versions of one poem (same opening, a character
    changed later) land in the same split instead of leaking into the test set."""
    return shared_split(body(lines[:2]), (96, 2, 2))


def keywords(poem: dict, rng: random.Random, k: int = 1) -> list[str]:
    """k distinct 1- or 2-character keywords drawn from the poem's lines (function characters
    skipped), so that short themes look like training sources."""
    lines = poem["lines"]
    singles = sorted({c for x in lines for c in x if c not in _FUNCTION})
    pairs = sorted({x[i:i + 2] for x in lines for i in range(len(x) - 1)
                    if x[i] not in _FUNCTION and x[i + 1] not in _FUNCTION})
    out: list[str] = []
    for _ in range(8 * k):
        if len(out) == k:
            break
        pool = pairs if pairs and rng.random() < 0.5 else singles
        if pool:
            w = rng.choice(pool)
            if w not in out:
                out.append(w)
    return out


def t2s(cc, text: str) -> str:
    """OpenCC t2s, except where it would map a common character to a rare extension-block
    simplified form (CJK Extension B+, e.g. 𬭭): the traditional character is kept there."""
    out = cc.convert(text)
    if len(out) != len(text):
        return out
    return "".join(o if is_cjk(o) and not is_cjk(c) else c for c, o in zip(out, text))


def _fresh(out: Path, tarball: Path) -> bool:
    files = [out / f for f in OUTPUTS]
    return all(f.exists() for f in files) and min(
        f.stat().st_mtime for f in files) >= tarball.stat().st_mtime


def normalise(text: str) -> str:
    """Variant forms to their standard form (VARIANTS)."""
    return "".join(VARIANTS.get(c, c) for c in text)


def _read(cc, rec: dict, dynasty: str, reasons, corpus_lines: set, seen: set, rows: dict,
          variants) -> None:
    """One raw record: its lines into `corpus_lines`, a regular poem into its split."""
    raw = segments(t2s(cc, "".join(rec.get("paragraphs") or [])))
    segs = [(normalise(s), m) for s, m in raw]
    for group in (raw, segs):
        corpus_lines.update(s for s, _ in group if len(s) in (5, 7) and all(map(is_cjk, s)))
    lines, why = regular(raw)
    if lines is None:
        reasons[dynasty][why] += 1
        return
    text = body(lines)           # the key of duplicates and splits: before VARIANTS (so the
    if text in seen:             # Tang splits stay what they were before Song came in)
        reasons[dynasty]["duplicate body"] += 1
        return
    seen.add(text)
    clean = [normalise(x) for x in lines]
    variants.update(c for x in lines for c in x if c in VARIANTS)
    split = split_of(lines) + ("" if dynasty == "tang" else "_song")
    rows[split].append({
        "id": rec.get("id", ""), "title": normalise(clean_title(t2s(cc, rec.get("title") or ""))),
        "author": t2s(cc, rec.get("author") or ""), "form": form_of(clean).name,
        "lines": clean, "body": body(clean)})


def prepare(tarball: Path = TARBALL, out: Path = OUT, force: bool = False,
            verify: bool = True) -> dict:
    """Build the corpus files under `out` (skipped when they are newer than the tarball)."""
    tarball, out = Path(tarball), Path(out)
    tarball = ensure_tarball(tarball) if verify else tarball
    if not force and _fresh(out, tarball):
        print(f"{out} is up to date with {tarball.name}; skipping (use --force to rebuild)")
        return json.loads((out / "stats.json").read_text(encoding="utf-8"))
    from opencc import OpenCC
    cc = OpenCC("t2s")
    reasons = {d: collections.Counter() for d in ("tang", "song")}
    raw = collections.Counter()
    corpus_lines: set[str] = set()
    seen: set[str] = set()
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS + SONG}
    variants: collections.Counter = collections.Counter()
    for dynasty in ("tang", "song"):
        for rec in iter_poems(tarball, dynasty):
            raw[dynasty] += 1
            _read(cc, rec, dynasty, reasons, corpus_lines, seen, rows, variants)
    out.mkdir(parents=True, exist_ok=True)
    planner = Planner.from_poems(rows["train"] + rows["train_song"])
    for items in rows.values():
        for r in items:
            r["keywords"] = planner.extract(r["lines"])
    write_text(out / "keywords.json", planner.to_json())
    for split, items in rows.items():
        write_jsonl(out / f"{split}.jsonl", items)
    LineIndex(corpus_lines).save(out / "lines.npz.xz")
    limits = Limits.from_poems(r["lines"] for r in rows["train"])
    write_text(out / "repetition.json", limits.to_json())
    write_text(out / "themes.json", Associations.from_poems(rows["train"]).to_json())
    tang = {s: rows[s] for s in SPLITS}
    chars = {c for items in tang.values() for r in items for x in r["lines"] for c in x}
    leftover = collections.Counter(c for items in rows.values() for r in items
                                   for c in r["body"] if not _gb2312(c))
    stats = {
        "source": f"npm {PACKAGE}@{VERSION} dist/quantangshi/poet.tang.*.json",
        "raw_poems": raw["tang"], "kept": sum(map(len, tang.values())),
        "dropped": dict(reasons["tang"]),
        "splits": {s: {"total": len(items), **{f: sum(r["form"] == f for r in items)
                                                for f in FORMS}} for s, items in tang.items()},
        "forms": {f: sum(r["form"] == f for items in tang.values() for r in items) for f in FORMS},
        "characters": sum(len(r["body"]) - len(r["lines"]) for v in tang.values() for r in v),
        "distinct_characters": len(chars), "corpus_lines": len(corpus_lines),
        "keywords": {"vocabulary": len(planner.df), "expanded_title_characters":
                     len(planner.near), "lines_with_keyword": round(sum(
                         k is not None for r in rows["train"] for k in r["keywords"])
                         / max(1, sum(len(r["lines"]) for r in rows["train"])), 4)},
        "song": {"source": f"npm {PACKAGE}@{VERSION} dist/quantangshi/poet.song.*.json",
                 "raw_poems": raw["song"], "kept": sum(len(rows[s]) for s in SONG),
                 "dropped": dict(reasons["song"]),
                 "splits": {s: {"total": len(rows[s]), **{f: sum(r["form"] == f for r in rows[s])
                                                          for f in FORMS}} for s in SONG}},
        "variants_normalised": {"poems_characters": sum(variants.values()),
                                "top": dict(variants.most_common(10))},
        "outside_gb2312": {"characters": sum(leftover.values()), "distinct": len(leftover),
                           "top": "".join(c for c, _ in leftover.most_common(30))}}
    write_text(out / "stats.json", json.dumps(stats, ensure_ascii=False, indent=1) + "\n")
    return stats


def _gb2312(c: str) -> bool:
    try:
        c.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


def load_split(split: str, out: Path = OUT) -> list[dict]:
    return read_jsonl(Path(out) / f"{split}.jsonl", "python -m poetry.poems.data prepare")


def load_dataset(out: Path = OUT):
    """The three splits as a Hugging Face DatasetDict."""
    import datasets
    return datasets.DatasetDict({s: datasets.Dataset.from_list(load_split(s, out))
                                 for s in SPLITS})


def lines_path(out: Path = OUT) -> Path:
    return prepared(Path(out) / "lines.npz.xz")


def readme_section(stats: dict) -> str:
    """The 'Poems' section of data/README.md, from stats.json."""
    head = "| split | total | " + " | ".join(FORMS) + " |"
    rows = [f"| {s} | {v['total']:,} | " + " | ".join(f"{v[f]:,}" for f in FORMS) + " |"
            for s, v in stats["splits"].items()]
    all_row = (f"| all | {stats['kept']:,} | "
               + " | ".join(f"{stats['forms'][f]:,}" for f in FORMS) + " |")
    return "\n".join([head, "| --- " * (len(FORMS) + 2) + "|", *rows, all_row])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.poems.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the corpus files from the npm tarball")
    p.add_argument("--tarball", type=Path, default=TARBALL)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--unverified", action="store_true",
                   help="a tarball laid out as the release but not it (a sample): its "
                        "checksum is not checked and nothing is fetched")
    s = sub.add_parser("stats", help="print the counts table for data/README.md")
    s.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        if args.unverified and not args.tarball.is_file():
            raise FileNotFoundError(f"{args.tarball} is missing (--unverified fetches nothing)")
        stats = prepare(args.tarball, args.out, args.force, verify=not args.unverified)
        print(f"{stats['kept']:,} poems of {stats['raw_poems']:,}; "
              f"{stats['distinct_characters']:,} distinct characters; "
              f"{stats['corpus_lines']:,} corpus lines -> {args.out}")
        print(readme_section(stats))
    else:
        print(readme_section(json.loads((args.out / "stats.json").read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
