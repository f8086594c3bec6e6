"""Train and export the tune model: meter + mode + rhythm tokens -> a normalised tune body.

    python -m poetry.tune_train --out runs/tune --threads 1 [--epochs 8] [model.k=v train.k=v]
    python -m poetry.tune_train --out runs/tune --export data/models/tune   # after training

Source = three special tokens, e.g. `<M:6/8><K:maj><R:jig>`; target = the tune's normalised
body (transposed to C of its mode by `poetry.tune_data`) as music tokens. One tokenizer (music
tokens of the training bodies + the setting specials) serves both sides. Rerunning the same
command resumes from the checkpoint in --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from shared.checkpoint import export_model, load_state
from shared.cli import run_cli
from shared.config import apply_overrides, from_dict
from shared.model import Seq2Seq, Seq2SeqConfig
from shared.tokenizers import Tokenizer
from shared.trainer import TrainConfig, Trainer, evaluate, init_distributed

from . import tune_data
from .abc import KEY_MODES, METERS, make_tokenizer

SETTING_TOKENS = ([f"<M:{m}>" for m in METERS] + [f"<K:{k}>" for k in KEY_MODES]
                  + [f"<R:{r}>" for r in tune_data.RHYTHMS])
REBUILD = ("python -m poetry.tune_data prepare && python -m poetry.tune_train --out runs/tune "
           "--threads 1 && python -m poetry.tune_train --out runs/tune --export data/models/tune")


def source_text(meter: str, mode: str, rhythm: str) -> str:
    return f"<M:{meter}><K:{mode}><R:{rhythm}>"


def build_tokenizer(train: list[dict]) -> Tokenizer:
    return make_tokenizer([t["body"] for t in train], specials=SETTING_TOKENS)


def pairs(tunes: list[dict], tok: Tokenizer) -> list:
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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threads(run_info: dict):
    argv = run_info.get("argv", [])
    if "threads" in run_info:
        return run_info["threads"]
    return argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else "default"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.tune_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(tune_data.DEFAULT_OUT), help="prepared corpus folder")
    ap.add_argument("--out", default="runs/tune", help="run folder (checkpoints, metrics)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training tunes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--export", help="export the best weights of --out to this folder and exit")
    ap.add_argument("overrides", nargs="*", help="model.KEY=VALUE or train.KEY=VALUE")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    train = tune_data.load_split("train", data)
    val = tune_data.load_split("validation", data)
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
    tcfg = default_train_config(args.epochs)
    bad = [o for o in args.overrides if not o.startswith(("model.", "train."))]
    if bad:
        raise ValueError(f"override {bad[0]!r} must start with model. or train.")
    mcfg = apply_overrides(mcfg, [o[6:] for o in args.overrides if o.startswith("model.")])
    tcfg = apply_overrides(tcfg, [o[6:] for o in args.overrides if o.startswith("train.")])
    if (out / "run.json").exists():   # resume: shape settings come from the first run
        saved = json.loads((out / "run.json").read_text())
        mcfg = from_dict(Seq2SeqConfig, saved["model"])
    torch.manual_seed(tcfg.seed)
    model = Seq2Seq(mcfg)
    if args.export:
        return export(model, tok, out, Path(args.export), val, train, data)
    init_distributed()
    (out / "run.json").write_text(json.dumps({"model": asdict(mcfg), "train": asdict(tcfg),
                                              "threads": torch.get_num_threads(),
                                              "argv": sys.argv[1:]}, indent=1))
    print(f"tune model: {model.num_parameters():,} parameters, vocabulary {tok.vocab_size}, "
          f"{len(train)} training tunes", file=sys.stderr)
    trainer = Trainer(model, pairs(train, tok), pairs(val, tok), tcfg, out,
                      bos=tok.bos_id, eos=tok.eos_id)
    result = trainer.fit()
    wall = out / "wall_seconds.json"     # summed over resumed runs, for the model card
    done = json.loads(wall.read_text())["seconds"] if wall.exists() else 0.0
    wall.write_text(json.dumps({"seconds": round(done + result["seconds"], 1),
                                "stopped": result["stopped"]}))
    print(json.dumps(result), file=sys.stderr)
    return 0


def export(model: Seq2Seq, tok: Tokenizer, run: Path, dest: Path, val: list[dict],
           train: list[dict], data: Path) -> int:
    from safetensors.torch import load_file
    load_state(model, load_file(str(run / "best.safetensors")))
    metrics = evaluate(model, pairs(val, tok), bos=tok.bos_id, eos=tok.eos_id)
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    run_info = json.loads((run / "run.json").read_text())
    stats = json.loads((data / "stats.json").read_text())
    steps = [r for r in log if "tokens_per_s" in r]
    val_log = [r for r in log if "val_nll" in r]
    card = {
        "task": "tune",
        "corpus": "ABC collections bundled with PyPI music21 (essenFolksong, oneills1850, "
                  "airdsAirs, ryansMammoth, miscFolk), prepared by poetry.tune_data",
        "counts": {"splits": stats.get("splits"), "tokens": stats.get("tokens"),
                   "meters": stats.get("meters"), "modes": stats.get("modes"),
                   "rhythms": stats.get("rhythms")},
        "source": "<M:meter><K:mode><R:rhythm>; target: the body in music tokens, transposed "
                  "to C of its mode (the writer transposes to the requested key)",
        "rhythms_by_meter": rhythm_table(train),
        "model": run_info["model"], "train": run_info["train"],
        "validation": {"nll_per_token": metrics["nll"], "ppl": metrics["ppl"],
                       "tokens": metrics["tokens"]},
        "history": val_log,
        "training": {"steps": max((r["step"] for r in log), default=None),
                     "epochs_completed": len(val_log),
                     "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None},
        "hardware": f"{cpu_name()}, {os.cpu_count()} cores, training on "
                    f"{_threads(run_info)} thread(s), CPU only, fp32",
        "notes": "tokens_per_s is the trainer's mean over the run (real target tokens incl. "
                 "<eos>); the shipped weights are bf16, loaded as fp32",
        "rebuild": REBUILD,
        "exported": time.strftime("%Y-%m-%d"),
    }
    wall = run / "wall_seconds.json"
    if wall.exists():
        card["training"].update(json.loads(wall.read_text()))
    export_model(dest, model, tok, card)
    # the no-copy rule needs the 4-bar windows of the training tunes: ship them with the model
    shutil.copyfile(data / "train_windows.npy", dest / "train_windows.npy")
    print(f"exported to {dest}: validation nll {metrics['nll']:.4f} nats/token "
          f"(ppl {metrics['ppl']:.2f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
