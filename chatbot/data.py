"""The chat corpora, as conversations: English chit-chat first, Chinese too.

    python -m chatbot.data prepare [--wheels cache/pypi] [--kdconv DIR] [--out cache/chat] [--force]
    python -m chatbot.data stats   [--out cache/chat]     # the data/README.md section

Sources (PyPI wheels, fetched with `pip download --no-deps`, sha256-checked, read as zip files:
nothing is installed):
  * `chitchat-dataset==0.9.0` (MIT): 7,168 open-domain two-person conversations (BYU Chit Chat
    Challenge). Its messages come grouped by sender; one sender's consecutive messages form one
    turn, joined by a space.
  * `chatterbot-corpus==1.3.3`: the YAML dialogs of its `english` and `chinese` folders.
Plus, when the folder is there (`--kdconv`, default `../shared/data/kdconv` beside the
checkout), KdConv (THU-COAI, Apache-2.0): 900 Chinese knowledge-grounded multi-turn dialogs
(film, music, travel; its dev and test files), split 90/5/5 % by conversation so that Chinese
has a test set of its own; the everyday dialogue corpora of `--dialogs` (default
`../shared/data/dialogs`; chatbot/everyday.py: DailyDialog, Topical-Chat, Commonsense-Dialogues,
PersonaChat, Personality Chat, XDailyDialog, C3-D, LCCC, CPED), DailyDialog in its own splits and
the others split 90/5/5 % by conversation, so that the English and the Chinese test sets mix the
sources; `--commercial-only` leaves out every source whose licence is non-commercial or
research-only; and the project's persona (`data/persona/persona.json`: who the bot
is, what it can do, who made it), every question-answer pair a training conversation.

Writes train/validation/test.jsonl of {"id", "source", "lang", "turns"} (the everyday sources'
records add "licence") and stats.json. Splits
are by conversation (shared.data.split_of of its id, 96/2/2 %), so no conversation's turns cross splits.
Whitespace is collapsed; empty turns are dropped; conversations with fewer than two turns, and
exact repeats of an earlier conversation, are dropped and counted.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

from shared.checkpoint import sha256
from shared.data import SPLITS, read_jsonl, split_of, write_jsonl, write_text

from . import everyday

WHEELS = {   # package: (version, file name, sha256)
    "chitchat-dataset": ("0.9.0", "chitchat_dataset-0.9.0-py3-none-any.whl",
                         "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e"),
    "chatterbot-corpus": ("1.3.3", "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
                          "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"),
}
WHEEL_DIR = Path("cache/pypi")
ROOT = Path(__file__).resolve().parents[1]
KDCONV = ROOT.parent / "shared" / "data" / "kdconv"
PERSONA = ROOT / "data" / "persona" / "persona.json"
KDCONV_HOME = "https://github.com/thu-coai/KdConv (data/{film,music,travel}/{dev,test}.json)"
OUT = Path("cache/chat")
CHATTERBOT_LANGS = {"english": "en", "chinese": "zh"}
_SPACE = re.compile(r"\s+")


def ensure_wheel(package: str, folder: Path = WHEEL_DIR, verify: bool = True) -> Path:
    """The verified wheel of `package` under `folder`, fetched with pip if absent."""
    version, name, digest = WHEELS[package]
    path = Path(folder) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"fetching {package}=={version} with pip download...", file=sys.stderr)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--only-binary", ":all:", f"{package}=={version}",
                               "-d", str(path.parent)], capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            raise SystemExit(f"could not fetch {package}=={version} from PyPI; on a machine "
                             f"that can, run `pip download --no-deps {package}=={version}` and "
                             f"copy {name} to {path.parent}/")
    if verify and sha256(path) != digest:
        raise SystemExit(f"{path}: sha256 does not match {package}=={version}; delete it and "
                         f"run the command again")
    return path


def clean(text) -> str:
    return _SPACE.sub(" ", str(text)).strip() if text is not None else ""


def iter_chitchat(wheel: Path) -> Iterator[dict]:
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read("chitchat_dataset/dataset.json"))
    for cid in sorted(data):
        turns = [clean(" ".join(clean(m.get("text")) for m in group))
                 for group in data[cid].get("messages") or []]
        yield {"id": f"chitchat/{cid}", "source": "chitchat", "lang": "en", "turns": turns}


def iter_chatterbot(wheel: Path) -> Iterator[dict]:
    import yaml
    pattern = re.compile(r"chatterbot_corpus/data/(\w+)/(\w+)\.yml")
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            m = pattern.fullmatch(name)
            if not m or m.group(1) not in CHATTERBOT_LANGS:
                continue
            doc = yaml.safe_load(z.read(name).decode("utf-8")) or {}
            for i, conv in enumerate(doc.get("conversations") or []):
                turns = [clean(t) for t in (conv if isinstance(conv, list) else [conv])]
                yield {"id": f"chatterbot/{m.group(1)}/{m.group(2)}/{i}", "source": "chatterbot",
                       "lang": CHATTERBOT_LANGS[m.group(1)], "turns": turns}


def iter_kdconv(folder: Path) -> Iterator[dict]:
    """KdConv conversations: each utterance one turn (the knowledge triples are not used)."""
    for path in sorted(Path(folder).glob("*/*.json")):
        for i, conv in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            turns = [clean(m.get("message")) for m in conv.get("messages") or []]
            yield {"id": f"kdconv/{path.parent.name}/{path.stem}/{i}", "source": "kdconv",
                   "lang": "zh", "turns": turns}


def load_persona(path: Path = PERSONA) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


PERSONA_EDITS = 4    # the version of iter_persona's edits: bump it when they change, and
                     # `prepare` rebuilds a corpus prepared with others


def units_of(text: str, lang: str) -> list[str]:
    """Words (English) or characters (Chinese): what persona variants edit, and sizes count."""
    return text.split() if lang == "en" else list(text.replace(" ", ""))


def frequent_units(convs: list[dict], k: int = 100) -> dict[str, list[str]]:
    """Per language, the k most frequent words (lower-cased; letters only) or characters (no
    digits or punctuation) of the turns."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for c in convs:
        for t in c["turns"]:
            counts[c["lang"]].update(u.lower() if c["lang"] == "en" else u
                                     for u in units_of(t, c["lang"]) if u.isalpha())
    return {lang: sorted(u for u, _ in cnt.most_common(k)) for lang, cnt in counts.items()}


def _key(text: str) -> str:
    """A question without case, spaces or punctuation: a variant that matches a held-out
    phrasing this way is not trained on."""
    return "".join(c for c in text.lower() if c.isalnum())


def variant(question: str, lang: str, fillers: list[str], rng: random.Random) -> str:
    """The question with one filler (a frequent word or character of the corpus) inserted at a
    random place: the random-insertion edit of easy data augmentation (Wei & Zou 2019)."""
    units = units_of(question, lang)
    if fillers:
        units.insert(rng.randrange(len(units) + 1), rng.choice(fillers))
    return (" " if lang == "en" else "").join(units)


def iter_persona(path: Path = PERSONA, fillers: dict[str, list[str]] | None = None
                 ) -> Iterator[dict]:
    """Every (question, answer) pair of every topic, `repeat` times: training conversations.
    With `fillers` (frequent_units of the corpus, less the words or characters of every
    persona question: the topics', the validation and the evaluation ones), every copy after
    the first asks the question with one of them inserted (`variant`), so the model learns the
    topic's words rather than a fixed string; the insertion is seeded by the copy's id; in
    English every second edited copy also starts with a capital letter, as people type. An
    edit that would ask a held-out phrasing (validation, evaluation) is not made."""
    persona = load_persona(path)
    held = [(lang, q) for part in ("validation", "evaluation")
            for lang, qs in persona.get(part, {}).items() for q in qs]
    held_out = {_key(q) for _, q in held}
    own = {(lang, _key(u)) for lang, q in held + [(t["lang"], q) for t in persona["topics"]
                                                  for q in t["questions"]]
           for u in units_of(q, lang)}
    if fillers is not None:                  # no word of any persona question, held-out or not
        fillers = {lang: [u for u in us if (lang, u) not in own] for lang, us in fillers.items()}
    for t in persona["topics"]:
        for qi, q in enumerate(t["questions"]):
            for ai, a in enumerate(t["answers"]):
                for k in range(persona.get("repeat", 1)):
                    cid = f"persona/{t['lang']}/{t['topic']}/{qi}/{ai}/{k}"
                    asked = clean(q)
                    if k and fillers is not None:
                        edited = variant(asked, t["lang"], fillers.get(t["lang"], []),
                                         random.Random(cid))
                        if t["lang"] == "en" and k % 2 == 0:      # as people type it
                            edited = edited[:1].upper() + edited[1:]
                        asked = asked if _key(edited) in held_out else edited
                    yield {"id": cid, "source": "persona", "lang": t["lang"],
                           "turns": [asked, clean(a)]}


def size(turns: list[str], lang: str) -> int:
    """Words (English) or characters without spaces (Chinese)."""
    return sum(len(units_of(t, lang)) for t in turns)


def prepare(wheels: Path = WHEEL_DIR, out: Path = OUT, force: bool = False,
            verify: bool = True, kdconv: Path | None = KDCONV,
            persona: Path | None = PERSONA, dialogs: Path | None = everyday.DIALOGS,
            commercial_only: bool = False) -> dict:
    wheels, out = Path(wheels), Path(out)
    paths = {p: ensure_wheel(p, wheels, verify) for p in WHEELS}
    if persona is not None and not Path(persona).is_file():
        raise FileNotFoundError(f"the persona file {persona} is missing")
    own = sha256(Path(persona)) if persona is not None else None
    chosen = {"dialogs": str(dialogs) if dialogs is not None else None,
              "commercial_only": commercial_only}
    if not force and (out / "stats.json").exists() and all(
            (out / f"{s}.jsonl").exists() for s in SPLITS):
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        if stats.get("persona_sha256") == own and stats.get("persona_edits") == PERSONA_EDITS \
                and stats.get("everyday") == chosen:
            print(f"{out} is already prepared; skipping (use --force to rebuild)")
            return stats
        print(f"{out} was prepared with another persona file (or none), other edits of "
              f"its questions or other everyday sources: rebuilding")
    dropped: collections.Counter = collections.Counter()
    seen: set[tuple[str, ...]] = set()
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    raw = 0
    sources = [*iter_chitchat(paths["chitchat-dataset"]),
               *iter_chatterbot(paths["chatterbot-corpus"])]
    if kdconv is not None and Path(kdconv).is_dir():
        sources += list(iter_kdconv(Path(kdconv)))
    elif kdconv is not None:
        print(f"KdConv not found at {kdconv}: preparing without it (Chinese dialogs are then "
              f"few). It lives at {KDCONV_HOME}; pass its folder with --kdconv.",
              file=sys.stderr)
    if dialogs is not None:
        if everyday.missing(dialogs):
            print(f"everyday corpora not found in {dialogs}: {', '.join(everyday.missing(dialogs))}"
                  f" (preparing without them)", file=sys.stderr)
        sources += list(everyday.conversations(Path(dialogs), commercial_only))
    for conv in sources:
        raw += 1
        conv["turns"] = [t for t in conv["turns"] if t]
        if len(conv["turns"]) < 2:
            dropped["fewer than two turns"] += 1
            continue
        if tuple(conv["turns"]) in seen:
            dropped["repeat of an earlier conversation"] += 1
            continue
        seen.add(tuple(conv["turns"]))
        split = conv.pop("split", None) or split_of(
            conv["id"], (96, 2, 2) if conv["source"] in ("chitchat", "chatterbot") else (90, 5, 5))
        rows[split].append(conv)
    if persona is not None:                     # identity: always trained on, never split
        rows["train"] += list(iter_persona(Path(persona), frequent_units(rows["train"])))
    out.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        write_jsonl(out / f"{split}.jsonl", items)
    groups = sorted({(c["source"], c["lang"]) for v in rows.values() for c in v})
    stats = {
        "sources": {p: f"PyPI {p}=={WHEELS[p][0]}" for p in WHEELS},
        "raw_conversations": raw, "kept": sum(map(len, rows.values())),
        "dropped": dict(dropped),
        "splits": {s: {f"{src}/{lang}": {
            "conversations": sum(1 for c in v if (c["source"], c["lang"]) == (src, lang)),
            "turns": sum(len(c["turns"]) for c in v if (c["source"], c["lang"]) == (src, lang)),
            "size": sum(size(c["turns"], lang) for c in v if (c["source"], c["lang"]) == (src, lang))}
            for src, lang in groups} for s, v in rows.items()},
        "size_unit": "words (en) or characters (zh)", "everyday": chosen,
        "licences": {src: lic for src, (_, lic, _) in everyday.LICENCES.items()
                     if any(c["source"] == src for v in rows.values() for c in v)},
        "persona_sha256": own, "persona_edits": PERSONA_EDITS}
    write_text(out / "stats.json", json.dumps(stats, ensure_ascii=False, indent=1) + "\n")
    return stats


def load_split(split: str, out: Path = OUT) -> list[dict]:
    return read_jsonl(Path(out) / f"{split}.jsonl", "python -m chatbot.data prepare")


def readme_section(stats: dict) -> str:
    """The counts table of data/README.md's chat section, from stats.json."""
    out = ["| split | source | conversations | turns | words (en) / characters (zh) |",
           "| --- | --- | --- | --- | --- |"]
    for split, groups in stats["splits"].items():
        for group, v in groups.items():
            if not v["conversations"]:
                continue
            out.append(f"| {split} | {group} | {v['conversations']:,} | {v['turns']:,} | "
                       f"{v['size']:,} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chatbot.data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the conversation files from the PyPI wheels")
    p.add_argument("--wheels", type=Path, default=WHEEL_DIR, help="where the wheels are cached")
    p.add_argument("--kdconv", type=Path, default=KDCONV,
                   help="KdConv's data folder ({film,music,travel}/{dev,test}.json)")
    p.add_argument("--dialogs", type=Path, default=everyday.DIALOGS,
                   help="the everyday dialogue corpora's folder (chatbot/everyday.py)")
    p.add_argument("--no-dialogs", action="store_true", help="prepare without them")
    p.add_argument("--commercial-only", action="store_true",
                   help="leave out every everyday source whose licence is non-commercial or "
                        "research-only")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--force", action="store_true", help="rebuild even if prepared")
    p.add_argument("--unverified", action="store_true",
                   help="wheels laid out as the releases but not them (samples): their "
                        "checksums are not checked")
    s = sub.add_parser("stats", help="print the counts table for data/README.md")
    s.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        stats = prepare(args.wheels, args.out, args.force, verify=not args.unverified,
                        kdconv=args.kdconv, dialogs=None if args.no_dialogs else args.dialogs,
                        commercial_only=args.commercial_only)
        print(f"{stats['kept']:,} conversations of {stats['raw_conversations']:,} "
              f"(dropped: {stats['dropped']}) -> {args.out}")
    else:
        path = args.out / "stats.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run `python -m chatbot.data prepare`")
        stats = json.loads(path.read_text(encoding="utf-8"))
    print(readme_section(stats))
    return 0


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
