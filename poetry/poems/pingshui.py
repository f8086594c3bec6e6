"""平水韵 (the rhyme book of regulated verse) and the classical level and oblique tones.

    python -m poetry.poems.pingshui build [--source ../shared/data/pingshui]   # -> pingshui.json

The table `pingshui.json` beside this file is derived from charlesix59/chinese_word_rhyme (MIT,
commit ff0e9c13fb037c43e0eaa5dc929c0fe4fa2ffb18: `Pingshui_Rhyme.json`, the 106 groups, and
`Word_Tune.json`, 平 / 仄 / 多 per character with the entering tone 入声 counted as 仄). It holds:

* `level`: the 30 level-tone groups (上平 15, 下平 15), each as a string of its characters,
  named by their head character (东 冬 江 ... 咸); a character with several readings stands in
  several groups. A rhyme position (平声韵) takes a character of one group.
* `tones`: "平", "仄" or "多" (either, by reading) per character, from both files: level where
  Word_Tune marks it 平 or 多 or a level group holds it, oblique where Word_Tune marks it 仄 or
  多 or an oblique group (上 去 入) holds it (重 is 仄 in Word_Tune, but 冬 holds it as chóng).

A character the table does not know has no classical tone here: `verse` falls back on its
modern Mandarin tones for 平仄 (never for rhyme).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("pingshui.json")
SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "pingshui"
LEVEL_PARTS = ("上平声部", "下平声部")
OBLIQUE_PARTS = ("上声部", "去声部", "入声部")
PROVENANCE = ("derived from charlesix59/chinese_word_rhyme (MIT licence, Copyright (c) 2023 "
              "Charles 闵), commit ff0e9c13fb037c43e0eaa5dc929c0fe4fa2ffb18, "
              "data/Pingshui_Rhyme.json and data/Word_Tune.json")


def _group_name(name: str) -> str:
    """'一东' -> '东', '十一尤' -> '尤': a group by its head character."""
    return re.sub(r"^[一二三四五六七八九十]+", "", name)


def build(source: Path) -> dict:
    rhyme = json.loads((source / "Pingshui_Rhyme.json").read_text(encoding="utf-8"))
    marks = json.loads((source / "Word_Tune.json").read_text(encoding="utf-8"))
    missing = [p for p in LEVEL_PARTS + OBLIQUE_PARTS if p not in rhyme]
    if missing:
        raise ValueError(f"{source}/Pingshui_Rhyme.json has no {', '.join(missing)}")
    level = {}
    for part in LEVEL_PARTS:
        for name, chars in rhyme[part].items():
            level[_group_name(name)] = "".join(dict.fromkeys(chars))
    if len(level) != 30:
        raise ValueError(f"expected the 30 level-tone groups of 平水韵, found {len(level)}")
    in_level = set("".join(level.values()))
    in_oblique = {c for part in OBLIQUE_PARTS for chars in rhyme[part].values() for c in chars}
    tones = {}
    for c in sorted(in_level | in_oblique | set(marks)):
        flat = c in in_level or marks.get(c) in ("平", "多")
        sharp = c in in_oblique or marks.get(c) in ("仄", "多")
        tones[c] = "多" if flat and sharp else "平" if flat else "仄"
    return {"provenance": PROVENANCE, "licence": "MIT", "level": level,
            "tones": {m: "".join(c for c, t in tones.items() if t == m) for m in "平仄多"}}


@lru_cache(maxsize=1)
def table() -> tuple[dict[str, frozenset[str]], dict[str, str]]:
    """(character -> its level groups, character -> 平 / 仄 / 多)."""
    raw = json.loads(TABLE.read_text(encoding="utf-8"))
    groups: dict[str, set[str]] = {}
    for name, chars in raw["level"].items():
        for c in chars:
            groups.setdefault(c, set()).add(name)
    tones = {c: m for m, chars in raw["tones"].items() for c in chars}
    return {c: frozenset(g) for c, g in groups.items()}, tones


@lru_cache(maxsize=1)
def group_names() -> tuple[str, ...]:
    return tuple(json.loads(TABLE.read_text(encoding="utf-8"))["level"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.poems.pingshui", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["build"])
    ap.add_argument("--source", type=Path, default=SOURCE,
                    help="the folder with Pingshui_Rhyme.json and Word_Tune.json")
    ap.add_argument("--out", type=Path, default=TABLE)
    args = ap.parse_args(argv)
    for name in ("Pingshui_Rhyme.json", "Word_Tune.json"):
        if not (args.source / name).is_file():
            ap.error(f"{args.source / name} is missing (see --source)")
    data = build(args.source)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n = {m: len(s) for m, s in data["tones"].items()}
    print(f"wrote {args.out}: {len(data['level'])} level groups, "
          f"{sum(len(s) for s in data['level'].values())} entries; tones {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
