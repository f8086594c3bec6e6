"""Train and export the poem model: theme + form token -> poem, character level.

    python -m poetry.poems.train --out runs/poem [--epochs 8] [model.hidden=384 train.lr=1e-3]
    python -m poetry.poems.train --out runs/poem-tang --init runs/poem --splits train \
        --epochs 2 train.lr=5e-4 train.warmup_steps=50      # then a Tang-only fine-tune
    python -m poetry.poems.train --out runs/poem-tang --export data/models/poem

Training reads the Tang and the Song training poems; validation and test are Tang (comparable
with earlier releases). Sources (poetry/poems/format.py), a stable choice per poem:
half are the title plus a plan of 1-4 of the poem's own line keywords (poetry/poems/planning.py)
in line order, a quarter the title alone, a quarter 1-2 keywords drawn from the poem as the
theme (so a one- or two-character theme works). Held-out splits use the title alone.
The shipped model then trains two more epochs on the Tang poems alone, from the best weights
at a lower learning rate (`--init`): Tang test perplexity 180 -> 161 per character, Song
test 204 -> 214 (Tang is the style the readers and the evaluation measure).
Target = the poem with '，' and '。'. Rerunning the same command resumes from the checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from shared import runs
from shared.cli import run_cli
from shared.model import Seq2SeqConfig
from shared.tokenizers import CharTokenizer, Tokenizer
from shared.trainer import TrainConfig

from . import data as poem_data
from .format import MAX_KEYWORDS, SPECIALS, source_text
from .planning import Planner


def training_source(poem: dict) -> str:
    """Title + planned keywords (1/2), title (1/4), keywords as the theme (1/4): a stable
    choice per poem."""
    h = int(hashlib.sha1((poem["id"] + poem["body"]).encode()).hexdigest()[:8], 16)
    rng = random.Random(h)
    title = poem.get("title")
    planned = [(i, k) for i, k in enumerate(poem.get("keywords") or ()) if k]
    if h % 4 < 2 and title and planned:
        chosen = sorted(rng.sample(planned, rng.randint(1, min(MAX_KEYWORDS, len(planned)))))
        return source_text(poem["form"], title, [k for _, k in chosen])
    if h % 4 == 2 and title:
        return source_text(poem["form"], title)
    return source_text(poem["form"], "".join(poem_data.keywords(poem, rng, k=rng.choice([1, 2]))))


def build_tokenizer(train) -> CharTokenizer:
    texts = [p["body"] for p in train] + [p.get("title", "") for p in train]
    return CharTokenizer.train(texts, specials=SPECIALS, min_freq=2)


def pairs(poems: list[dict], tok: Tokenizer, split: str = "train") -> list:
    """Training pairs mix titles and keywords as themes; held-out splits use the title."""
    out = []
    for p in poems:
        src = training_source(p) if split == "train" else source_text(p["form"], p["title"])
        out.append((tok.encode(src), tok.encode(p["body"])))
    return out


def default_model_config(vocab: int) -> Seq2SeqConfig:
    # Sources are a few characters: one bidirectional layer reads them; two decoder layers
    # with the encoder summary fed at every step carry the theme through 56 characters.
    # ~2.4 k tokens/s on one thread on the AVX2 machine, ~13 minutes an epoch.
    return runs.small_lstm_config(vocab)


def train_config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, warmup_steps=300,
                       checkpoint_every=200, patience=2, max_tgt_len=64, max_src_len=32)


def card(train: list[dict], data: Path) -> dict:
    stats = json.loads((data / "stats.json").read_text())
    return {"corpus": "npm chinese-poetry@2.0.1, quantangshi (Tang and Song), regular forms; "
                      "validation and test: Tang",
            "counts": {"tang": stats.get("splits", stats),
                       "song": stats.get("song", {}).get("splits", {})},
            "source": "<form> + theme (title or 1-2 keywords) [+ <kw> + planned keywords "
                      "joined by ，]; target: poem with ，。",
            "note": "validation: per target token, punctuation and <eos> included; "
                    "python -m poetry.evaluate poem reports test perplexity per character "
                    "without them"}


def novelty_lines(data: Path, tmp: Path, tok=None, train=None) -> dict:
    """Files the rules need, shipped beside the model: every corpus line (lines.npz.xz, already
    compressed), the repetition limits, the theme associations and the planner."""
    planner = Planner.load(Path(data) / "keywords.json")
    (tmp / "keywords.json").write_text(Planner({}, planner.poems, planner.near).to_json(),
                                       encoding="utf-8")     # generation needs the expansions
    return {"lines.npz.xz": poem_data.lines_path(data),
            "repetition.json": Path(data) / "repetition.json",
            "themes.json": Path(data) / "themes.json",
            "keywords.json": tmp / "keywords.json"}


PREPARE = "python -m poetry.poems.data prepare"
TASK = runs.TrainTask(
    name="poem", prog="python -m poetry.poems.train", doc=__doc__, data=poem_data.OUT,
    out="runs/poem", epochs=3, build_tokenizer=build_tokenizer,
    model_config=default_model_config, train_config=train_config, pairs=pairs, card=card,
    extra_files=novelty_lines, train_splits=("train", "train_song"),
    prepare=PREPARE,
    rebuild=f"{PREPARE} && python -m poetry.poems.train --out runs/poem "
            "--threads 1 --epochs 3 && python -m poetry.poems.train --out runs/poem-tang --init "
            "runs/poem --splits train --threads 1 --epochs 2 train.lr=5e-4 "
            "train.warmup_steps=50 && python -m poetry.poems.train --out runs/poem-tang "
            "--export data/models/poem")


def main(argv: list[str] | None = None) -> int:
    return runs.main(TASK, argv)


if __name__ == "__main__":
    run_cli(main)
