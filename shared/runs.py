"""Every task's training script, written once: a task describes itself as a `TrainTask` and
`main(task)` does the rest — common options, `model.K=V` / `train.K=V` overrides, the splits
through Hugging Face `datasets` (shared/data.py: local JSONL, tokenization cached with `map`),
resume (shape settings come from the run's first invocation, as in nanoGPT), the run record,
and export with a model card."""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file

from . import data as datalib
from .checkpoint import export_model, load_state
from .config import apply_overrides, from_dict
from .model import Seq2Seq, Seq2SeqConfig
from .tokenizers import Tokenizer
from .trainer import TrainConfig, Trainer, evaluate, init_distributed


@dataclass
class TrainTask:
    """What a task's training script says about itself; `main(task)` runs it."""
    name: str                                   # "poem": the model card's task
    prog: str                                   # "python -m poetry.poems.train"
    doc: str                                    # the script's help text
    data: Path                                  # default prepared corpus folder
    out: str                                    # default run folder
    epochs: int
    build_tokenizer: Callable[[list[dict]], Tokenizer]     # from the training records
    model_config: Callable[[int], Seq2SeqConfig]            # vocabulary size -> config
    train_config: Callable[[int], TrainConfig]              # epochs -> config
    pairs: Callable[[list[dict], Tokenizer, str], list]     # (records, tokenizer, split) ->
                                                            # (source ids, target ids) pairs
    card: Callable[[list[dict], Path], dict]                # (train records, data) -> card
    rebuild: str                                            # the commands that rebuild it
    extra_files: Callable[..., dict] = field(               # (data, tmp, tokenizer, train
        default=lambda data, tmp, tok, train: {})           # records) -> {name: path}
    backward: Optional["TrainTask"] = None      # a second model the same script trains with
                                                # --backward (e.g. chat's p(source | reply))
    train_splits: tuple[str, ...] = ("train",)  # the prepared files training reads (poems:
                                                # Tang and Song); validation/test stay one each
    prepare: str = ""                           # the command that prepares the corpus (for a
                                                # card's rebuild command)


def main(task: TrainTask, argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog=task.prog, description=task.doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, task.data, task.out, task.epochs)
    if task.backward is not None:
        ap.add_argument("--backward", action="store_true",
                        help=f"train (or export) the backward model: {task.backward.doc}")
    args = ap.parse_args(argv)
    if getattr(args, "backward", False):
        task = task.backward
    if args.init:
        start_from(Path(args.init), Path(args.out))
    if args.tokenizer and not args.export:
        adopt_tokenizer(Path(args.tokenizer), Path(args.out))
    splits = load_splits(args.data, tuple(args.splits or task.train_splits))
    train_records = splits["train"]
    if args.limit:
        train_records = train_records.select(range(min(args.limit, len(train_records))))
    tok = tokenizer(args.out, lambda: task.build_tokenizer(train_records))   # from the corpus
    train_records = only(train_records, args.only)
    mcfg, tcfg = configs(args, task.model_config(tok.vocab_size), task.train_config(args.epochs))
    torch.manual_seed(tcfg.seed)
    model = Seq2Seq(mcfg)
    if args.init and not args.export:
        load_best(model, args.init)
    val = encoded(only(splits["validation"], args.only, "validation"), task, tok, "validation",
                  args.out)
    if args.export:           # the task's files (chat's index) from each record once, unrepeated
        return export(task, model, tok, Path(args.out), Path(args.export), val,
                      train_records.to_list(), Path(args.data), args.train_seconds)
    train(model, encoded(repeated(train_records, args.repeat), task, tok, "train", args.out),
          val, tcfg, args.out,
          bos=tok.bos_id, eos=tok.eos_id, what=f"{task.name} model",
          argv=sys.argv[1:] if argv is None else list(argv))
    return 0


def start_from(init: Path, out: Path) -> None:
    """A fine-tuning run takes the tokenizer and model shape of the run it starts from (the
    weights are loaded after the model is built); an existing run folder must agree."""
    for name in ("tokenizer.json", "run.json", "best.safetensors"):
        if not (init / name).exists():
            raise FileNotFoundError(f"{init / name} is missing: --init takes a trained run folder")
    adopt_tokenizer(init, out)
    if not (out / "run.json").exists():       # the model shape for configs(); train() rewrites it
        shape = json.loads((init / "run.json").read_text())["model"]
        datalib.write_text(out / "run.json", json.dumps({"model": shape}, indent=1))


def adopt_tokenizer(source: Path, out: Path) -> None:
    """The run `out` takes the tokenizer of `source` (a run or model folder, or a
    tokenizer.json) instead of building its own: a model that must share another's pieces (the
    Chinese chat bot, the English one's). An existing run folder must already hold it."""
    path = source / "tokenizer.json" if source.is_dir() else source
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: give a run or model folder, or a "
                                f"tokenizer.json")
    theirs = path.read_text()
    mine = out / "tokenizer.json"
    out.mkdir(parents=True, exist_ok=True)
    if mine.exists():                 # written once (atomically): torchrun ranks only read it
        if mine.read_text() != theirs:
            raise ValueError(f"{out} has another tokenizer than {path}: give a new --out")
    else:
        datalib.write_text(mine, theirs)


def load_splits(folder: str | Path, train_splits: tuple[str, ...] = ("train",)):
    """The prepared corpus as a DatasetDict (train, validation, test); "train" holds the
    records of every file in `train_splits`, in that order."""
    folder = Path(folder)
    for name in train_splits:
        if not (folder / f"{name}.jsonl").exists():
            raise FileNotFoundError(f"{folder / name}.jsonl is missing: prepare the corpus "
                                    f"first (README, 'Retrain')")
    if train_splits == ("train",):
        return datalib.load(folder)
    import datasets                  # train from several files: one load, no file read twice
    return datasets.load_dataset("json", data_files={
        "train": [str(folder / f"{n}.jsonl") for n in train_splits],
        **{s: str(folder / f"{s}.jsonl") for s in ("validation", "test")
           if (folder / f"{s}.jsonl").exists()}})


def encoded(ds, task: TrainTask, tok: Tokenizer, split: str, out: str | Path) -> list:
    """(source ids, target ids) pairs of a split, tokenized once per tokenizer and cached in
    the run folder."""
    def fn(batch: dict) -> dict:
        pairs = task.pairs(datalib.records(batch), tok, split)
        return {"src": [s for s, _ in pairs], "tgt": [t for _, t in pairs]}
    fingerprint = f"{task.name}:{split}:{tok.fingerprint()}"
    ds = datalib.tokenize(ds, fn, Path(out) / "tokenized", fingerprint, batched=True)
    return list(zip(ds["src"], ds["tgt"]))


def add_arguments(ap: argparse.ArgumentParser, data: str | Path, out: str, epochs: int) -> None:
    ap.add_argument("--data", default=str(data), help="prepared corpus folder")
    ap.add_argument("--out", default=out, help="run folder (checkpoints, metrics)")
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training items")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--export", help="export the best weights of --out to this folder and exit")
    ap.add_argument("--train-seconds", type=float, default=None,
                    help="with --export: training wall time, for runs whose log lacks it")
    ap.add_argument("--init", metavar="RUN",
                    help="fine-tune: start from RUN's best weights, with its tokenizer and "
                         "model shape (the new run's own checkpoints win on resume)")
    ap.add_argument("--tokenizer", metavar="PATH",
                    help="train with the tokenizer of PATH (a run or model folder, or a "
                         "tokenizer.json) instead of one built from the corpus")
    ap.add_argument("--splits", metavar="NAMES", type=lambda s: [x for x in s.split(",") if x],
                    help="the prepared training files to read, comma-separated (default: the "
                         "task's, e.g. train,train_song); validation and test stay as they are")
    ap.add_argument("--repeat", metavar="FIELD=VALUE:K", type=repeat_spec,
                    help="read the training records whose FIELD is VALUE K times in all (e.g. "
                         "lang=zh:3: a language with little text upsampled)")
    ap.add_argument("--only", metavar="FIELD=VALUE", type=only_spec,
                    help="train and validate on the records whose FIELD is VALUE alone (e.g. "
                         "lang=zh with --init: a one-language model from a joint one)")
    ap.add_argument("overrides", nargs="*", help="model.KEY=VALUE or train.KEY=VALUE")


def repeat_spec(text: str) -> tuple[str, str, int]:
    m = re.fullmatch(r"(\w+)=([^:]+):(\d+)", text)
    if not m or int(m.group(3)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give FIELD=VALUE:K, e.g. lang=zh:3")
    return m.group(1), m.group(2), int(m.group(3))


def only_spec(text: str) -> tuple[str, str]:
    m = re.fullmatch(r"(\w+)=(.+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give FIELD=VALUE, e.g. lang=zh")
    return m.group(1), m.group(2)


def matching(records, field: str, value: str, option: str, split: str = "training"):
    """The records whose `field` is `value`; ValueError if there is no such field or record."""
    if field not in records.column_names:
        raise ValueError(f"{option}: the {split} records have no field {field!r} (they have "
                         f"{', '.join(records.column_names)})")
    some = records.filter(lambda r: str(r[field]) == value)
    if len(some) == 0:
        raise ValueError(f"{option}: no {split} record has {field} = {value!r}")
    return some


def only(records, spec: Optional[tuple[str, str]], split: str = "training"):
    """The records whose `field` is `value` (all of them without a spec)."""
    return records if spec is None else matching(records, *spec, "--only", split)


def repeated(records, spec: Optional[tuple[str, str, int]]):
    """The records, with those whose `field` is `value` read `k` times in all."""
    if spec is None:
        return records
    import datasets
    field, value, k = spec
    some = matching(records, field, value, "--repeat")
    return datasets.concatenate_datasets([records] + [some] * (k - 1))


def small_lstm_config(vocab: int) -> Seq2SeqConfig:
    """The shape the poem and chat models share: a 1-layer bidirectional LSTM encoder, a
    2-layer LSTM decoder fed the encoder summary at every step, emb 128, hidden 256, tied and
    shared embeddings. Sized for this 2-core AVX2 CPU (no AMX: bf16 does not pay here, see
    shared/bench.py): ~1.3-2.4 k target tokens/s on one thread, depending on the vocabulary."""
    return Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, cell="lstm", emb_dim=128, hidden=256,
                         enc_layers=1, dec_layers=2, bidirectional=True, dropout=0.1,
                         residual=True, feed_context=True, tie_embeddings=True,
                         share_embeddings=True)


def tokenizer(out: str | Path, build: Callable[[], Tokenizer]) -> Tokenizer:
    """The run's tokenizer: built once by `build()` and saved, then reloaded on every resume."""
    path = Path(out) / "tokenizer.json"
    if path.exists():
        return Tokenizer.load(path)
    tok = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok


TUNABLE = ("dropout",)     # model settings a fine-tune (--init) may change: not the shape


def configs(args, mcfg: Seq2SeqConfig, tcfg: TrainConfig) -> tuple[Seq2SeqConfig, TrainConfig]:
    """Apply overrides; on resume, take the model's shape from the run's record."""
    if args.threads:
        torch.set_num_threads(args.threads)
    bad = [o for o in args.overrides if not o.startswith(("model.", "train."))]
    if bad:
        raise ValueError(f"override {bad[0]!r} must start with model. or train.")
    model = [o[6:] for o in args.overrides if o.startswith("model.")]
    mcfg = apply_overrides(mcfg, model)
    tcfg = apply_overrides(tcfg, [o[6:] for o in args.overrides if o.startswith("train.")])
    record = Path(args.out) / "run.json"
    if record.exists():
        saved = json.loads(record.read_text())
        mcfg = from_dict(Seq2SeqConfig, saved["model"])
        if "train" not in saved:   # a fine-tune's first start (start_from): the init run's
            shape = [o for o in model if o.split("=")[0] not in TUNABLE]   # shape, with this
            if shape:                                                     # run's dropout
                raise ValueError(f"--init keeps the model of {args.init}; only "
                                 f"{', '.join('model.' + k for k in TUNABLE)} may change, "
                                 f"not model.{shape[0]}")
            mcfg = apply_overrides(mcfg, model)
    return mcfg, tcfg


def train(model: Seq2Seq, train_pairs, val_pairs, tcfg: TrainConfig, out: str | Path, *,
          bos: int, eos: int, what: str, argv: Optional[list[str]] = None) -> dict:
    """Train, recording the model and training configs, `argv` (the command line, default
    sys.argv), threads, hardware and precision in out/run.json."""
    argv = sys.argv[1:] if argv is None else argv
    out = Path(out)
    init_distributed()
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, train_pairs, val_pairs, tcfg, out, bos=bos, eos=eos)
    record = out / "run.json"
    saved = json.loads(record.read_text()) if record.exists() else {}
    first = (saved.get("first_argv", saved.get("argv", argv)) if trainer.state["step"]
             else argv)                    # a resume keeps the first; a fresh start is its own
    if trainer.rank == 0:           # one writer, atomically: torchrun ranks tore it when both wrote
        datalib.write_text(record, json.dumps(
            {"model": asdict(model.cfg), "train": asdict(tcfg), "argv": argv,
             "first_argv": first, "threads": torch.get_num_threads(), "hardware": hardware(),
             "precision": trainer.precision}, indent=1))  # the choice and the probe's figures
    print(f"{what}: {model.num_parameters():,} parameters, {len(train_pairs)} training pairs, "
          f"{len(val_pairs)} validation pairs",
          file=sys.stderr)
    result = trainer.fit()
    print(json.dumps(result), file=sys.stderr)
    return result


def hardware() -> str:
    name = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores, CPU only"


def export(task: TrainTask, model: Seq2Seq, tok: Tokenizer, run: Path, dest: Path,
           val_pairs: list, train_records: list[dict], data: Path,
           train_seconds: float | None) -> int:
    """The run's best weights, their validation perplexity and the task's card -> dest."""
    load_best(model, run)
    metrics = evaluate(model, val_pairs, bos=tok.bos_id, eos=tok.eos_id)
    facts = card_facts(run, train_seconds)
    if facts["first_argv"] and task.prepare:     # the run's first command, then its export
        own = task.prog.split()[3:]              # what `python -m module` adds (--backward)
        command = f"{task.prog} {shlex.join(a for a in facts['first_argv'] if a not in own)}"
        rebuild = f"{task.prepare} && {command} && {command} --export {shlex.quote(str(dest))}"
    else:
        rebuild = task.rebuild
    card = {"task": task.name, **task.card(train_records, data),
            **({"train_splits": list(task.train_splits)}
               if task.train_splits != ("train",) else {}),
            **facts,
            "validation": {"nll_per_token": metrics["nll"], "ppl": metrics["ppl"],
                           "tokens": metrics["tokens"],
                           "note": "per target token, <eos> included"},
            "rebuild": rebuild, "exported": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        export_model(dest, model, tok, card,
                     extra_files=task.extra_files(data, Path(tmp), tok, train_records))
    print(f"exported to {dest}: validation nll {metrics['nll']:.4f} nats/token "
          f"(ppl {metrics['ppl']:.2f})", file=sys.stderr)
    return 0


def load_best(model: Seq2Seq, run: str | Path) -> None:
    path = Path(run) / "best.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train first (it is written after an epoch)")
    load_state(model, load_file(str(path)))


CURVE_POINTS = 200     # training-curve points kept in a model card


def card_facts(run: str | Path, train_seconds: float | None = None) -> dict:
    """What the run folder knows for a model card: configs, validation history, wall time."""
    run = Path(run)
    record = json.loads((run / "run.json").read_text())
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    elapsed = max((r.get("elapsed_s", 0.0) for r in log), default=0.0)
    seconds = train_seconds if train_seconds is not None else elapsed
    argv = record.get("argv", [])
    threads = record.get("threads") or (argv[argv.index("--threads") + 1]
                                        if "--threads" in argv[:-1] else "default")
    steps = [r for r in log if "grad_norm" in r]
    every = max(1, -(-len(steps) // CURVE_POINTS))
    return {"model": record["model"], "train": record["train"],
            "argv": argv,             # the training command's options (the last start's)
            "first_argv": record.get("first_argv", argv),               # and the first's
            "history": [{k: r[k] for k in ("epoch", "step", "val_nll", "val_ppl")}
                        for r in log if "val_nll" in r],
            # the training curve (loss, and the gradient norm before clipping), for the app
            "curve": [{k: round(r[k], 4) if isinstance(r[k], float) else r[k]
                       for k in ("step", "loss", "grad_norm", "lr") if k in r}
                      for r in steps[::every]],
            "steps": max((r.get("step", 0) for r in log), default=0),
            "train_wall_time_min": round(seconds / 60, 1),
            "hardware": f"{record.get('hardware', hardware())}; "
                        f"{threads} torch thread(s)",
            **({"precision": record["precision"]} if "precision" in record else {}),
            **({"fine_tuned_from": fine_tuned_from(argv)} if "--init" in argv[:-1] else {})}


def fine_tuned_from(argv: list[str]) -> dict:
    """What a fine-tuning run started from: the --init run's folder, training data, steps,
    wall time and validation history, as far as that folder still holds them."""
    init = Path(argv[argv.index("--init") + 1])
    if not (init / "run.json").exists() or not (init / "metrics.jsonl").exists():
        return {"run": str(init)}
    facts = card_facts(init)
    return {"run": str(init), "argv": json.loads((init / "run.json").read_text()).get("argv"),
            **{k: facts[k] for k in ("train", "history", "steps", "train_wall_time_min")}}
