"""Train and export the poem model: theme + form token -> poem, character level.

    python -m poetry.poems.train --out runs/poem [--epochs 8] [model.hidden=384 train.lr=1e-3]
    python -m poetry.poems.train --out runs/poem --export data/models/poem   # after training

Source = `<form>` + theme, where the theme is the poem's cleaned title for half the poems and
1-2 keywords drawn from the poem for the other half (so a one- or two-character theme works).
Target = the poem with '，' and '。'. Rerunning the same command resumes from the checkpoint.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path


from shared import runs
from shared.checkpoint import export_model
from shared.cli import run_cli
from shared.model import Seq2Seq, Seq2SeqConfig
from shared.tokenizers import CharTokenizer, Tokenizer
from shared.trainer import TrainConfig, evaluate

from . import data as poem_data
from .format import FORM_TOKENS, source_text


def training_source(poem: dict) -> str:
    """Title for half of the poems, keywords for the other half: a stable choice per poem."""
    h = int(hashlib.sha1(poem["id"].encode()).hexdigest()[:8], 16)
    if h % 2 == 0 and poem.get("title"):
        return source_text(poem["form"], poem["title"])
    rng = random.Random(h)
    return source_text(poem["form"], "".join(poem_data.keywords(poem, rng, k=rng.choice([1, 2]))))


def build_tokenizer(train: list[dict]) -> CharTokenizer:
    texts = [p["body"] for p in train] + [p.get("title", "") for p in train]
    return CharTokenizer.train(texts, specials=FORM_TOKENS, min_freq=2)


def pairs(poems: list[dict], tok: Tokenizer, title_only: bool = False) -> list:
    out = []
    for p in poems:
        src = source_text(p["form"], p["title"]) if title_only else training_source(p)
        out.append((tok.encode(src), tok.encode(p["body"])))
    return out


def default_model_config(vocab: int) -> Seq2SeqConfig:
    # Sources are a few characters: one bidirectional layer reads them; two decoder layers
    # with the encoder summary fed at every step carry the theme through 56 characters.
    # ~2.4 k tokens/s on one thread here, ~13 minutes an epoch.
    return runs.small_lstm_config(vocab)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.poems.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    runs.add_arguments(ap, poem_data.OUT, "runs/poem", epochs=4)
    args = ap.parse_args(argv)
    out = Path(args.out)
    train, val, tok, model, tcfg = runs.setup(
        args, poem_data.load_split, build_tokenizer, default_model_config,
        TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, warmup_steps=300,
                    checkpoint_every=200, patience=2, max_tgt_len=64, max_src_len=16))
    if args.export:
        return export(model, tok, out, Path(args.export), val, Path(args.data),
                      args.train_seconds, args.schedule_note)
    runs.train(model, pairs(train, tok), pairs(val, tok, title_only=True), tcfg, out,
               bos=tok.bos_id, eos=tok.eos_id, what="poem model")
    return 0


def export(model: Seq2Seq, tok: Tokenizer, run: Path, dest: Path, val: list[dict],
           data: Path, train_seconds: float | None,
           schedule_note: str | None = None) -> int:
    runs.load_best(model, run)
    metrics = evaluate(model, pairs(val, tok, title_only=True), bos=tok.bos_id, eos=tok.eos_id)
    stats = json.loads((data / "stats.json").read_text())
    card = {
        "task": "poem", "corpus": "npm chinese-poetry@2.0.1, quantangshi (Tang), regular forms",
        "counts": stats.get("splits", stats),
        "source": "<form> + theme (title or 1-2 keywords); target: poem with ，。",
        **runs.card_facts(run, train_seconds, schedule_note),
        "validation": {"nll_per_token": metrics["nll"], "ppl": metrics["ppl"],
                       "note": "per target token, punctuation and <eos> included; "
                               "python -m poetry.evaluate poem reports test perplexity per "
                               "character without them"},
        "rebuild": "python -m poetry.poems.data prepare && python -m poetry.poems.train "
                   "--out runs/poem --threads 1 && python -m poetry.poems.train --out runs/poem "
                   "--export data/models/poem",
        "exported": time.strftime("%Y-%m-%d"),
    }
    # the novelty rule needs every Tang line: ship them compressed beside the model
    with tempfile.TemporaryDirectory() as tmp:
        gz = Path(tmp) / "lines.txt.gz"
        with open(poem_data.lines_path(data), "rb") as src, open(gz, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as dst:
            shutil.copyfileobj(src, dst)           # mtime=0: the same bytes on every export
        export_model(dest, model, tok, card, extra_files={"lines.txt.gz": gz})
    print(f"exported to {dest}: validation ppl {metrics['ppl']:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
