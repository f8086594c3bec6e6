"""Seasons in a poem: a lexicon from corpus statistics, and when a poem's seasons conflict.

    python -m poetry.poems.scenes build [--data cache/poems] [--out data/models/poem/seasons.json]
    python -m poetry.poems.scenes rates [--data cache/poems]       # real poems' conflict rate

A poem whose title names one season (春 夏 秋 冬, and no other) is a poem of that season. A
character or two-character word belongs to a season's lexicon when the training poems of that
season use it far more than those of the others: at least MIN_COUNT uses in such poems, and at
least SHARE of its uses, counted per season with the seasons weighed equally, are in one
season's poems (蝉 summer, 雁 autumn, 莺 spring, 雪 winter).

A poem's season signal: 2 for each season character it holds (春 in 春风), 1 for each lexicon
item; it names a season whose signal reaches 2. A poem **conflicts** when it names two
seasons that are not neighbours in the year (spring and autumn, summer and winter) or names
three: 「今日春寒落叶红」 names spring (春) and autumn (落叶, 红叶...). Neighbouring seasons
meet in real poems at the turn of the season (残春 and 初夏), so they are no conflict.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

SEASONS = "春夏秋冬"
MIN_COUNT = 12
SHARE = 0.65
NEIGHBOURS = {frozenset("春夏"), frozenset("夏秋"), frozenset("秋冬"), frozenset("冬春")}


def _items(lines: Sequence[str]) -> set[str]:
    """The characters and adjacent pairs of a poem's lines (a set: each counts once)."""
    out = set()
    for x in lines:
        out.update(x)
        out.update(x[k:k + 2] for k in range(len(x) - 1))
    return out


def season_of_title(title: str) -> str | None:
    named = {c for c in title if c in SEASONS}
    return next(iter(named)) if len(named) == 1 else None


class Seasons:
    def __init__(self, lexicon: dict[str, str]):
        self.lexicon = lexicon           # item -> season

    @classmethod
    def build(cls, poems: Iterable[dict]) -> "Seasons":
        counts = {s: Counter() for s in SEASONS}
        n = Counter()
        for p in poems:
            s = season_of_title(p.get("title", ""))
            if s:
                n[s] += 1
                counts[s].update(i for i in _items(p["lines"]) if not set(i) & set(SEASONS))
        lexicon = {}
        for item in set().union(*counts.values()):
            rate = {s: counts[s][item] / max(n[s], 1) for s in SEASONS}    # per poem
            total = sum(rate.values())
            best = max(rate, key=rate.get)
            if counts[best][item] >= MIN_COUNT and rate[best] / total >= SHARE:
                lexicon[item] = best
        # a pair whose characters already carry the season adds nothing
        lexicon = {k: v for k, v in lexicon.items()
                   if len(k) == 1 or not all(lexicon.get(c) == v for c in k)}
        return cls(dict(sorted(lexicon.items())))

    def signal(self, lines: Sequence[str]) -> dict[str, int]:
        text = "".join(lines)
        out = Counter({s: 2 * text.count(s) for s in SEASONS if s in text})
        for item in _items(lines):
            s = self.lexicon.get(item)
            if s:
                out[s] += 1
        return dict(out)

    def named(self, lines: Sequence[str]) -> set[str]:
        return {s for s, v in self.signal(lines).items() if v >= 2}

    def conflicts(self, lines: Sequence[str]) -> bool:
        named = self.named(lines)
        return len(named) >= 3 or (len(named) == 2 and frozenset(named) not in NEIGHBOURS)

    def rate(self, poems: Iterable[Sequence[str]]) -> float:
        flags = [self.conflicts(p) for p in poems]
        return round(sum(flags) / len(flags), 4) if flags else 0.0

    def save(self, path: str | Path) -> None:
        by = {s: "".join(sorted(k for k, v in self.lexicon.items() if v == s and len(k) == 1))
              for s in SEASONS}
        pairs = {s: sorted(k for k, v in self.lexicon.items() if v == s and len(k) == 2)
                 for s in SEASONS}
        Path(path).write_text(json.dumps({"characters": by, "words": pairs,
                                          "min_count": MIN_COUNT, "share": SHARE},
                                         ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Seasons":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        lexicon = {c: s for s, chars in raw["characters"].items() for c in chars}
        lexicon.update({w: s for s, words in raw["words"].items() for w in words})
        return cls(lexicon)


def main(argv=None) -> int:
    from . import data as poem_data
    ap = argparse.ArgumentParser(prog="python -m poetry.poems.scenes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["build", "rates"])
    ap.add_argument("--data", type=Path, default=poem_data.OUT)
    ap.add_argument("--out", type=Path, default=Path("data/models/poem/seasons.json"))
    args = ap.parse_args(argv)
    train = poem_data.load_split("train", args.data) + poem_data.load_split("train_song",
                                                                            args.data)
    seasons = Seasons.build(train)
    if args.action == "build":
        seasons.save(args.out)
        if (args.out.parent / "card.json").exists():      # beside the model: its card lists it
            from shared.checkpoint import add_files
            add_files(args.out.parent, args.out.name)
        by = Counter(seasons.lexicon.values())
        print(f"wrote {args.out}: {dict(by)} items", file=sys.stderr)
    else:
        for split in ("test", "test_song"):
            poems = [p["lines"] for p in poem_data.load_split(split, args.data)]
            print(json.dumps({"split": split, "poems": len(poems),
                              "mixed_seasons": seasons.rate(poems)}))
    return 0


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
