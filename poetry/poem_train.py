"""Train and export the poem model: theme + form token -> poem, character level.

    python -m poetry.poem_train --out runs/poem [--epochs 8] [model.hidden=384 train.lr=1e-3]
    python -m poetry.poem_train --out runs/poem --export data/models/poem   # after training

Source = `<form>` + theme, where the theme is the poem's cleaned title for half the poems and
1-2 keywords drawn from the poem for the other half (so a one- or two-character theme works).
Target = the poem with '，' and '。'. Rerunning the same command resumes from the checkpoint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from shared.checkpoint import export_model, load_state
from shared.cli import run_cli
from shared.config import apply_overrides, from_dict
from shared.model import Seq2Seq, Seq2SeqConfig
from shared.tokenizers import CharTokenizer, Tokenizer
from shared.trainer import TrainConfig, Trainer, evaluate, init_distributed

from . import poem_data
from .verse import FORMS

FORM_TOKENS = [f"<{f}>" for f in FORMS]


def source_text(form: str, theme: str) -> str:
    return f"<{form}>{theme}"


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
    # Sized for this 2-core AVX2 CPU (no AMX: bf16 does not pay here, see shared/bench.py):
    # ~2.4 k tokens/s on one thread, ~13 minutes an epoch.
    return Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, cell="lstm", emb_dim=128, hidden=256,
                         enc_layers=1, dec_layers=2, bidirectional=True, dropout=0.1,
                         residual=True, feed_context=True, tie_embeddings=True,
                         share_embeddings=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.poem_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(poem_data.OUT), help="prepared corpus folder")
    ap.add_argument("--out", default="runs/poem", help="run folder (checkpoints, metrics)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training poems")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--export", help="export the best weights of --out to this folder and exit")
    ap.add_argument("overrides", nargs="*", help="model.KEY=VALUE or train.KEY=VALUE")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    train = poem_data.load_split("train", Path(args.data))
    val = poem_data.load_split("validation", Path(args.data))
    if args.limit:
        train = train[:args.limit]
    tok_path = out / "tokenizer.json"
    if tok_path.exists():
        tok = Tokenizer.load(tok_path)
    else:
        tok = build_tokenizer(train)
        out.mkdir(parents=True, exist_ok=True)
        tok.save(tok_path)
    mcfg = default_model_config(tok.vocab_size)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=3e-3, warmup_steps=300,
                       checkpoint_every=200, patience=2, max_tgt_len=64, max_src_len=16)
    mcfg = apply_overrides(mcfg, [o[6:] for o in args.overrides if o.startswith("model.")])
    tcfg = apply_overrides(tcfg, [o[6:] for o in args.overrides if o.startswith("train.")])
    bad = [o for o in args.overrides if not o.startswith(("model.", "train."))]
    if bad:
        raise ValueError(f"override {bad[0]!r} must start with model. or train.")
    if (out / "run.json").exists():   # resume: shape settings come from the first run
        saved = json.loads((out / "run.json").read_text())
        mcfg = from_dict(Seq2SeqConfig, saved["model"])
    torch.manual_seed(tcfg.seed)
    model = Seq2Seq(mcfg)
    if args.export:
        return export(model, tok, out, Path(args.export), val)
    init_distributed()
    (out / "run.json").write_text(json.dumps({"model": asdict(mcfg), "train": asdict(tcfg),
                                              "argv": sys.argv[1:]}, indent=1))
    print(f"poem model: {model.num_parameters():,} parameters, vocabulary {tok.vocab_size}, "
          f"{len(train)} training poems", file=sys.stderr)
    trainer = Trainer(model, pairs(train, tok), pairs(val, tok, title_only=True), tcfg, out,
                      bos=tok.bos_id, eos=tok.eos_id)
    result = trainer.fit()
    print(json.dumps(result), file=sys.stderr)
    return 0


def export(model: Seq2Seq, tok: Tokenizer, run: Path, dest: Path, val: list[dict]) -> int:
    from safetensors.torch import load_file
    load_state(model, load_file(str(run / "best.safetensors")))
    metrics = evaluate(model, pairs(val, tok, title_only=True), bos=tok.bos_id, eos=tok.eos_id)
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r.get("seconds", 0) for r in log)
    run_info = json.loads((run / "run.json").read_text())
    stats = json.loads((Path(poem_data.OUT) / "stats.json").read_text())
    card = {
        "task": "poem", "corpus": "npm chinese-poetry@2.0.1, quantangshi (Tang), regular forms",
        "counts": stats.get("splits", stats),
        "source": "<form> + theme (title or 1-2 keywords); target: poem with ，。",
        "model": run_info["model"], "train": run_info["train"],
        "validation": {"nll_per_token": metrics["nll"], "ppl": metrics["ppl"]},
        "history": [r for r in log if "val_nll" in r],
        "hardware": f"{platform.processor() or platform.machine()}, "
                    f"{torch.get_num_threads()} threads, CPU only",
        "rebuild": "python -m poetry.poem_data prepare && python -m poetry.poem_train "
                   "--out runs/poem && python -m poetry.poem_train --out runs/poem "
                   "--export data/models/poem",
        "exported": time.strftime("%Y-%m-%d"),
    }
    lines = poem_data.lines_path()
    export_model(dest, model, tok, card)
    # novelty check needs every Tang line: ship them compressed beside the model
    import gzip
    import shutil
    with open(lines, "rb") as src, gzip.open(dest / "lines.txt.gz", "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    print(f"exported to {dest}: validation ppl {metrics['ppl']:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
