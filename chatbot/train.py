"""Train and export the chat models, SentencePiece pieces: the forward model (recent turns ->
the next turn) and the backward model (a reply -> the message it answered), whose score
p(message | reply) re-ranks the forward model's candidates (Li et al. 2016, MMI).

    python -m chatbot.train --out runs/chat --threads 1 [--epochs 3] [model.hidden=384]
    python -m chatbot.train --out runs/chat --export data/models/chat   # after training
    python -m chatbot.train --backward --out runs/chat-backward --threads 1
    python -m chatbot.train --backward --out runs/chat-backward --export data/models/chat-backward

Source and target as chatbot/format.py says. Every turn after a conversation's first is a
target once; targets longer than MAX_TGT pieces are left out rather than cut, so the model
always sees replies that end. Rerunning the same command resumes from the checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

from shared import runs
from shared.cli import run_cli
from shared.model import Seq2SeqConfig
from shared.tokenizers import SentencePieceTokenizer, Tokenizer
from shared.trainer import TrainConfig

from . import data as chat_data
from .format import CONTEXT, MAX_SRC, MAX_TGT, SEP, source_text

VOCAB = 8000


def pairs(convs: list[dict], tok: Tokenizer, split: str = "train") -> list:
    out = []
    for c in convs:
        turns = c["turns"]
        for i in range(1, len(turns)):
            tgt = tok.encode(turns[i])
            if 0 < len(tgt) <= MAX_TGT:
                out.append((tok.encode(source_text(turns[:i]))[-MAX_SRC:], tgt))
    return out


def backward_pairs(convs: list[dict], tok: Tokenizer, split: str = "train") -> list:
    """(reply -> the turn before it): the backward model's pairs, both sides <= the limits."""
    out = []
    for c in convs:
        turns = c["turns"]
        for i in range(1, len(turns)):
            src, tgt = tok.encode(turns[i]), tok.encode(turns[i - 1])
            if 0 < len(src) <= MAX_TGT and 0 < len(tgt) <= MAX_TGT:
                out.append((src, tgt))
    return out


def build_tokenizer(train) -> SentencePieceTokenizer:
    # full character coverage: the Chinese dialogs are a sliver of the text, and 0.9995
    # coverage left common characters such as 吗 unknown
    return SentencePieceTokenizer.train((t for c in train for t in c["turns"]), vocab_size=VOCAB,
                                        specials=[SEP], character_coverage=1.0)


def default_model_config(vocab: int) -> Seq2SeqConfig:
    # The poem model's shape over 8 k pieces: ~1.3 k target pieces/s on one thread on the
    # AVX2 machine, so three epochs of ~2 M target pieces took about 70 minutes.
    return runs.small_lstm_config(vocab)


def train_config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, warmup_steps=300,
                       checkpoint_every=200, patience=2, max_src_len=MAX_SRC,
                       max_tgt_len=MAX_TGT)


CORPUS = ("PyPI chitchat-dataset==0.9.0 (en) and chatterbot-corpus==1.3.3 (english, chinese); "
          "KdConv dev+test (zh, THU-COAI, Apache-2.0); the project's persona "
          "(data/persona/persona.json)")


def card(train: list[dict], data: Path) -> dict:
    stats = json.loads((data / "stats.json").read_text())
    return {"corpus": CORPUS, "counts": stats["splits"],
            "source": f"up to {CONTEXT} previous turns, each closed by {SEP}; target: the next "
                      f"turn (<= {MAX_TGT} SentencePiece pieces)"}


def backward_card(train: list[dict], data: Path) -> dict:
    stats = json.loads((data / "stats.json").read_text())
    return {"corpus": CORPUS, "counts": stats["splits"],
            "source": f"a turn (<= {MAX_TGT} pieces); target: the turn before it (the message "
                      f"it answered); the bot re-ranks replies by this model's score"}


def retrieval_index(data: Path, tmp: Path, tok: Tokenizer, train: list[dict]) -> dict:
    """(message, reply) pairs of the training conversations, the persona's included, as a BM25
    index: every source but retrieval.NOT_INDEXED (KdConv's text stays out of the
    repository)."""
    from .retrieval import NOT_INDEXED, Retrieval
    pairs = [(c["turns"][i - 1], c["turns"][i]) for c in train if c["source"] not in NOT_INDEXED
             for i in range(1, len(c["turns"])) if len(tok.encode(c["turns"][i])) <= MAX_TGT]
    path = tmp / "retrieval.npz"
    Retrieval.build(pairs, tok).save(path)
    return {"retrieval.npz": path}


PREPARE = "python -m chatbot.data prepare"
BACKWARD = runs.TrainTask(
    name="chat-backward", prog="python -m chatbot.train --backward",
    doc="p(message | reply), for re-ranking", data=chat_data.OUT, out="runs/chat-backward",
    epochs=2, build_tokenizer=build_tokenizer, model_config=default_model_config,
    train_config=train_config, pairs=backward_pairs, card=backward_card, prepare=PREPARE,
    rebuild=f"{PREPARE} && python -m chatbot.train --backward --out "
            "runs/chat-backward --threads 1 && python -m chatbot.train --backward --out "
            "runs/chat-backward --export data/models/chat-backward")
TASK = runs.TrainTask(
    name="chat", prog="python -m chatbot.train", doc=__doc__, data=chat_data.OUT,
    out="runs/chat", epochs=3, build_tokenizer=build_tokenizer,
    model_config=default_model_config, train_config=train_config, pairs=pairs, card=card,
    extra_files=retrieval_index, backward=BACKWARD, prepare=PREPARE,
    rebuild=f"{PREPARE} && python -m chatbot.train --out runs/chat "
            "--threads 1 && python -m chatbot.train --out runs/chat --export data/models/chat")


def main(argv: list[str] | None = None) -> int:
    return runs.main(TASK, argv)


if __name__ == "__main__":
    run_cli(main)
