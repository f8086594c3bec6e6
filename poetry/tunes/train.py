"""Train and export the tune model: meter + mode + rhythm tokens -> a normalised tune body.

    python -m poetry.tunes.train --out runs/tune --threads 1 [--epochs 8] [model.k=v train.k=v]
    python -m poetry.tunes.train --out runs/tune --export data/models/tune   # after training

Source = three special tokens, e.g. `<M:6/8><K:maj><R:jig>`; target = the tune's normalised
body (transposed to C of its mode by `poetry.tunes.data`) as music tokens. One tokenizer (music
tokens of the training bodies + the setting specials) serves both sides. Rerunning the same
command resumes from the checkpoint in --out.
"""
from __future__ import annotations

import json
from pathlib import Path

from shared import runs
from shared.cli import run_cli
from shared.model import Seq2SeqConfig
from shared.tokenizers import Tokenizer
from shared.trainer import TrainConfig

from . import data as tune_data
from .abc import make_tokenizer
from .format import SETTING_TOKENS, source_text

PREPARE = "python -m poetry.tunes.data prepare"
REBUILD = (f"{PREPARE} && python -m poetry.tunes.train --out runs/tune "
           "--threads 1 && python -m poetry.tunes.train --out runs/tune --export data/models/tune")


def build_tokenizer(train) -> Tokenizer:
    return make_tokenizer([t["body"] for t in train], specials=SETTING_TOKENS)


def pairs(tunes: list[dict], tok: Tokenizer, split: str = "train") -> list:
    return [(tok.encode(source_text(t["meter"], t["mode"], t["rhythm"])), tok.encode(t["body"]))
            for t in tunes]


def default_model_config(vocab: int) -> Seq2SeqConfig:
    # ~100 music tokens: a small embedding; the three setting tokens are read by one
    # bidirectional layer whose summary is fed to the 2-layer decoder at every step.
    return Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, cell="lstm", emb_dim=64, hidden=256,
                         enc_layers=1, dec_layers=2, bidirectional=True, dropout=0.1,
                         residual=True, feed_context=True, tie_embeddings=True,
                         share_embeddings=True)


def default_train_config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, warmup_steps=200,
                       checkpoint_every=100, patience=2, max_tgt_len=520, max_src_len=8)


def rhythm_table(train: list[dict]) -> dict:
    """meter -> {rhythm: count} in the training split (the writer's default rhythm)."""
    table: dict[str, dict[str, int]] = {}
    for t in train:
        row = table.setdefault(t["meter"], {})
        row[t["rhythm"]] = row.get(t["rhythm"], 0) + 1
    return {m: dict(sorted(r.items(), key=lambda kv: -kv[1])) for m, r in sorted(table.items())}


def card(train: list[dict], data: Path) -> dict:
    stats = json.loads((data / "stats.json").read_text())
    return {"corpus": "ABC collections bundled with PyPI music21 (essenFolksong, oneills1850, "
                      "airdsAirs, ryansMammoth, miscFolk), prepared by poetry.tunes.data",
            "counts": {"splits": stats.get("splits"), "tokens": stats.get("tokens"),
                       "meters": stats.get("meters"), "modes": stats.get("modes"),
                       "rhythms": stats.get("rhythms")},
            "source": "<M:meter><K:mode><R:rhythm>; target: the body in music tokens, "
                      "transposed to C of its mode (the writer transposes to the requested key)",
            "rhythms_by_meter": rhythm_table(train),
            "notes": "the shipped weights are bf16, loaded as fp32"}


TASK = runs.TrainTask(
    name="tune", prog="python -m poetry.tunes.train", doc=__doc__, data=tune_data.DEFAULT_OUT,
    out="runs/tune", epochs=8, build_tokenizer=build_tokenizer,
    model_config=default_model_config, train_config=default_train_config, pairs=pairs,
    card=card, rebuild=REBUILD, prepare=PREPARE,
    # the no-copy rule needs the 4-bar windows of the training tunes: shipped with the model
    extra_files=lambda data, tmp, tok, train: {"train_windows.npy": data / "train_windows.npy"})


def main(argv: list[str] | None = None) -> int:
    return runs.main(TASK, argv)


if __name__ == "__main__":
    run_cli(main)
