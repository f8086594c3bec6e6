"""Train and export the chat model: recent turns -> the next turn, SentencePiece pieces.

    python -m chatbot.train --out runs/chat --threads 1 [--epochs 3] [model.hidden=384]
    python -m chatbot.train --out runs/chat --export data/models/chat   # after training

Source = up to CONTEXT previous turns, oldest first, each closed by <sep> (speakers alternate,
so the order says who said what), cut to its last MAX_SRC pieces; target = the next turn. Every
turn after a conversation's first is a target once. Targets longer than MAX_TGT pieces are
left out rather than cut, so the model always sees replies that end. Rerunning the same
command resumes from the checkpoint.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


from shared import runs
from shared.checkpoint import export_model
from shared.cli import run_cli
from shared.model import Seq2Seq, Seq2SeqConfig
from shared.tokenizers import SentencePieceTokenizer, Tokenizer
from shared.trainer import TrainConfig, evaluate

from . import data as chat_data
from .format import CONTEXT, MAX_SRC, MAX_TGT, SEP, source_text

VOCAB = 8000


def pairs(convs: list[dict], tok: Tokenizer) -> list:
    out = []
    for c in convs:
        turns = c["turns"]
        for i in range(1, len(turns)):
            tgt = tok.encode(turns[i])
            if 0 < len(tgt) <= MAX_TGT:
                out.append((tok.encode(source_text(turns[:i]))[-MAX_SRC:], tgt))
    return out


def build_tokenizer(train: list[dict]) -> SentencePieceTokenizer:
    # full character coverage: the Chinese dialogs are a sliver of the text, and 0.9995
    # coverage left common characters such as 吗 unknown
    return SentencePieceTokenizer.train((t for c in train for t in c["turns"]), vocab_size=VOCAB,
                                        specials=[SEP], character_coverage=1.0)


def default_model_config(vocab: int) -> Seq2SeqConfig:
    # The poem model's shape over 8 k pieces: ~1.3 k target pieces/s on one thread here, so
    # three epochs of ~2 M target pieces take about 70 minutes.
    return runs.small_lstm_config(vocab)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chatbot.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    runs.add_arguments(ap, chat_data.OUT, "runs/chat", epochs=3)
    args = ap.parse_args(argv)
    out = Path(args.out)
    train, val, tok, model, tcfg = runs.setup(
        args, chat_data.load_split, build_tokenizer, default_model_config,
        TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, warmup_steps=300,
                    checkpoint_every=200, patience=2, max_src_len=MAX_SRC,
                    max_tgt_len=MAX_TGT))
    if args.export:
        return export(model, tok, out, Path(args.export), val, Path(args.data),
                      args.train_seconds, args.schedule_note)
    runs.train(model, pairs(train, tok), pairs(val, tok), tcfg, out, bos=tok.bos_id,
               eos=tok.eos_id, what="chat model")
    return 0


def export(model: Seq2Seq, tok: Tokenizer, run: Path, dest: Path, val: list[dict],
           data: Path, train_seconds: float | None, schedule_note: str | None = None) -> int:
    import json
    runs.load_best(model, run)
    metrics = evaluate(model, pairs(val, tok), bos=tok.bos_id, eos=tok.eos_id)
    stats = json.loads((data / "stats.json").read_text())
    card = {
        "task": "chat", "corpus": "PyPI chitchat-dataset==0.9.0 (en) and chatterbot-corpus==1.3.3 "
                                  "(english, chinese)",
        "counts": stats["splits"],
        "source": f"up to {CONTEXT} previous turns, each closed by {SEP}; target: the next turn "
                  f"(<= {MAX_TGT} SentencePiece pieces)",
        **runs.card_facts(run, train_seconds, schedule_note),
        "validation": {"nll_per_token": metrics["nll"], "ppl": metrics["ppl"],
                       "note": "per target piece, <eos> included"},
        "rebuild": "python -m chatbot.data prepare && python -m chatbot.train "
                   "--out runs/chat --threads 1 && python -m chatbot.train --out runs/chat "
                   "--export data/models/chat",
        "exported": time.strftime("%Y-%m-%d"),
    }
    export_model(dest, model, tok, card)
    print(f"exported to {dest}: validation ppl {metrics['ppl']:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
