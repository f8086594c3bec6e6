"""Everyday dialogue corpora (../shared/data/dialogs beside the checkout), as conversations.

Each reader yields {"id", "source", "lang", "turns", "split"?} from one folder, unchanged but for
whitespace and the fixes named below; `LICENCES` says what each source allows, and
`commercial_only` keeps only the sources whose licence allows commercial use.

English: DailyDialog (its own train / validation / test; exact duplicate dialogs and test
dialogs that also occur in train are dropped), the first 6 turns of Topical-Chat (later turns
trade trivia), Commonsense-Dialogues, PersonaChat's validation and test dialogs (the
`__SILENCE__` opener dropped), and Personality Chat's questions about the bot with the friendly
voice's answers. Chinese: XDailyDialog (the human translation of DailyDialog), C3-D (the
男：/女： speaker prefixes stripped, questions ignored), LCCC's sample (spaces between
characters removed; posts over 60 characters dropped), CPED (one speaker's consecutive lines
merged).
"""
from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
DIALOGS = ROOT.parent / "shared" / "data" / "dialogs"
TOPICAL_TURNS = 6
LCCC_MAX = 60
# source -> (language, licence as its repository states it, commercial use allowed)
LICENCES = {
    "dailydialog": ("en", "CC BY-NC-SA 4.0 (DailyDialog)", False),
    "topicalchat": ("en", "CDLA-Sharing 1.0 (Topical-Chat)", True),
    "commonsense": ("en", "CC BY-NC 4.0 (Commonsense-Dialogues)", False),
    "personachat": ("en", "PersonaChat validation and test (XPersona's copy, MIT repository; no "
                          "statement of its own for PersonaChat: treated as research use)", False),
    "personality": ("en", "MIT (Microsoft Personality Chat)", True),
    "xdailydialog": ("zh", "CC BY-NC-SA 4.0 (a translation of DailyDialog; XDailyDialog "
                           "repository Apache-2.0)", False),
    "c3d": ("zh", "non-commercial research purposes only (C3)", False),
    "lccc": ("zh", "research use only (LCCC's README: 仅限科研用途; repository MIT)", False),
    "cped": ("zh", "Apache-2.0 (CPED; the lines come from broadcast TV scripts)", True),
}
_SPACE = re.compile(r"\s+")
_SPEAKER = re.compile(r"^\s*(男|女)\s*[：:]\s*")
# a space between two CJK characters or CJK punctuation (LCCC separates every character)
_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef…]) (?=[\u3000-\u303f"
                      r"\u4e00-\u9fff\uff00-\uffef…])")


def clean(text) -> str:
    return _SPACE.sub(" ", str(text)).strip() if text is not None else ""


def dailydialog(folder: Path) -> Iterator[dict]:
    with zipfile.ZipFile(folder / "data.zip") as z:
        dialogs = json.loads(z.read("data/dialogues.json"))
    seen, train = set(), set()
    for d in dialogs:
        turns = tuple(clean(t["utterance"]) for t in d["turns"])
        if d["data_split"] == "train":
            train.add(turns)
    for d in dialogs:
        turns = tuple(clean(t["utterance"]) for t in d["turns"])
        split = d["data_split"]
        if turns in seen or (split != "train" and turns in train):
            continue                                  # a duplicate, or a test dialog in train
        seen.add(turns)
        yield {"id": d["dialogue_id"], "source": "dailydialog", "lang": "en",
               "turns": list(turns), "split": split}


def topicalchat(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("*.json")):
        for cid, conv in sorted(json.loads(path.read_text(encoding="utf-8")).items()):
            turns = [clean(m.get("message")) for m in conv.get("content", [])][:TOPICAL_TURNS]
            yield {"id": f"topicalchat/{cid}", "source": "topicalchat", "lang": "en",
                   "turns": turns}


def commonsense(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("*.json")):
        for cid, conv in sorted(json.loads(path.read_text(encoding="utf-8")).items()):
            yield {"id": f"commonsense/{cid}", "source": "commonsense", "lang": "en",
                   "turns": [clean(t) for t in conv.get("turns", [])]}


def personachat(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("En_persona_*.json")):
        for i, conv in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            turns = [clean(t) for pair in conv.get("dialogue", []) for t in pair]
            yield {"id": f"personachat/{path.stem}/{i}", "source": "personachat", "lang": "en",
                   "turns": [t for t in turns if t != "__SILENCE__"]}


def personality(folder: Path) -> Iterator[dict]:
    path = folder / "qna_chitchat_the_friend.tsv"
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f, delimiter="\t")):
            yield {"id": f"personality/{i}", "source": "personality", "lang": "en",
                   "turns": [clean(row.get("Question")), clean(row.get("Answer"))]}


def xdailydialog(folder: Path) -> Iterator[dict]:
    lines = (folder / "dialogues_text_Zh.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        turns = [clean(t) for t in line.split("__eou__")]
        yield {"id": f"xdailydialog/{i}", "source": "xdailydialog", "lang": "zh",
               "turns": [t for t in turns if t]}


def c3d(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("c3-d-*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            turns = [clean(_SPEAKER.sub("", t)) for t in item[0]]
            yield {"id": f"c3d/{item[2]}", "source": "c3d", "lang": "zh", "turns": turns}


def lccc(folder: Path) -> Iterator[dict]:
    def tidy(t: str) -> str:
        return _CJK_GAP.sub("", clean(t))

    for name in ("toy_train.txt", "toy_valid.txt"):
        for i, line in enumerate((folder / name).read_text(encoding="utf-8").splitlines()):
            turns = [tidy(t) for t in line.split("\t")]
            if all(0 < len(t) <= LCCC_MAX for t in turns):
                yield {"id": f"lccc/{name}/{i}", "source": "lccc", "lang": "zh", "turns": turns}
    data = json.loads((folder / "toy_data.json").read_text(encoding="utf-8"))
    for split, convs in sorted(data.items()):
        for i, conv in enumerate(convs):
            turns = [tidy(t) for t in conv]
            if all(0 < len(t) <= LCCC_MAX for t in turns):
                yield {"id": f"lccc/{split}/{i}", "source": "lccc", "lang": "zh", "turns": turns}


def cped(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("*_split.csv")):
        convs: dict[str, list[tuple[str, str]]] = {}
        with open(path, encoding="utf-8-sig", newline="") as f:
            for row in csv.DictReader(f):
                convs.setdefault(row["Dialogue_ID"], []).append((row["Speaker"],
                                                                 clean(row["Utterance"])))
        for cid, lines in sorted(convs.items()):
            turns: list[str] = []
            last = None
            for speaker, text in lines:
                if speaker == last and turns:
                    turns[-1] = f"{turns[-1]}，{text}" if text else turns[-1]
                elif text:
                    turns.append(text)
                last = speaker
            yield {"id": f"cped/{cid}", "source": "cped", "lang": "zh", "turns": turns}


READERS = {"dailydialog": (dailydialog, "dailydialog"), "topicalchat": (topicalchat, "topicalchat"),
           "commonsense": (commonsense, "commonsense"),
           "personachat": (personachat, "personachat-valid"),
           "personality": (personality, "personality-chat"),
           "xdailydialog": (xdailydialog, "xdailydialog"), "c3d": (c3d, "c3d"),
           "lccc": (lccc, "lccc-sample"), "cped": (cped, "cped")}


def conversations(root: Path = DIALOGS, commercial_only: bool = False) -> Iterator[dict]:
    """Every source whose folder is under `root` (missing ones are skipped: `missing` says
    which), each record with its licence."""
    for source, (reader, folder) in READERS.items():
        lang, licence, commercial = LICENCES[source]
        if commercial_only and not commercial:
            continue
        if (Path(root) / folder).is_dir():
            for conv in reader(Path(root) / folder):
                yield {**conv, "licence": licence}


def missing(root: Path = DIALOGS) -> list[str]:
    return [folder for _, folder in READERS.values() if not (Path(root) / folder).is_dir()]
