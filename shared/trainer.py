"""A trainer that knows no task: pairs of id lists in, a trained Seq2Seq out.

Length-bucketed batches, CPU bf16 autocast where it measures faster (`shared.precision`),
fused AdamW, linear warmup + cosine/linear decay,
gradient clipping, validation perplexity, early stopping, a JSONL metrics log, atomic checkpoints
every N steps with exact resume (model, optimiser, RNG, data position), a stop on NaN/exploding
loss, and DistributedDataParallel under `torchrun` (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import atexit
import json
import math
import os
import random
import signal
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from safetensors.torch import save_file

from .checkpoint import load_training_state, recover_dir, save_training_state, unique_state
from .model import Seq2Seq
from .precision import resolve

Pair = tuple[Sequence[int], Sequence[int]]   # (source ids, target ids without <bos>/<eos>)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64          # sequences per optimiser step, summed over all processes
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    decay: Literal["cosine", "linear", "none"] = "cosine"
    min_lr_ratio: float = 0.05    # the lr decays to lr * min_lr_ratio at the last step
    clip_norm: float = 1.0        # 0 = no clipping (watch for exploding gradients)
    # CPU bf16 autocast: "auto" times both precisions at the start (shared/precision.py) and
    # keeps the faster; true/false force it. A resumed run keeps its first run's choice.
    bf16: bool | Literal["auto"] = "auto"
    bucket_batches: int = 50      # sort by length inside windows of this many batches
    max_src_len: int = 128        # longer sequences are truncated, with a counted warning
    max_tgt_len: int = 256
    checkpoint_every: int = 500   # steps; 0 = only at epoch ends
    log_every: int = 50
    patience: int = 3             # epochs without a better validation loss before stopping
    max_loss: float = 50.0        # a finite loss above this counts as exploding
    max_steps: int = 0            # stop after this many steps in total (0 = no limit)
    max_seconds: float = 0.0      # stop once this invocation has trained this long (0 = no limit)
    seed: int = 0

    def validate(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")


class TrainingDiverged(RuntimeError):
    pass


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "none" or total <= cfg.warmup_steps:
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if cfg.decay == "cosine" else 1 - frac
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)


def clip_pairs(pairs: Sequence[Pair], max_src: int, max_tgt: int, what: str = "data") -> list:
    """Truncate over-long sequences with one counted warning; refuse an empty dataset."""
    if len(pairs) == 0:
        raise ValueError(f"{what}: the dataset is empty")
    out, cut = [], 0
    for src, tgt in pairs:
        if len(src) > max_src or len(tgt) > max_tgt:
            cut += 1
        out.append((list(src[:max_src]), list(tgt[:max_tgt])))
    if cut:
        warnings.warn(f"{what}: truncated {cut} of {len(pairs)} sequences longer than "
                      f"{max_src} (source) / {max_tgt} (target) tokens")
    return out


def batches_for_epoch(pairs: Sequence[Pair], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """Index batches for one epoch, a pure function of (seed, epoch): shuffle, sort by length
    inside windows of `bucket_batches` batches (little padding), then shuffle the batches."""
    rng = random.Random(cfg.seed * 100_003 + epoch)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    window = cfg.batch_size * max(1, cfg.bucket_batches)
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window],
                       key=lambda i: (len(pairs[i][1]), len(pairs[i][0])))
        batches += [chunk[j:j + cfg.batch_size] for j in range(0, len(chunk), cfg.batch_size)]
    rng.shuffle(batches)
    return batches


def collate(pairs: Sequence[Pair], idx: Sequence[int], bos: int, eos: int, pad: int):
    """-> src (B, S), src_len (B,), tgt_in (B, T), tgt_out (B, T); tgt_in = <bos>+y, tgt_out = y+<eos>."""
    B = len(idx)
    S = max(1, max(len(pairs[i][0]) for i in idx))
    T = max(len(pairs[i][1]) for i in idx) + 1
    src = torch.full((B, S), pad, dtype=torch.long)
    src_len = torch.ones(B, dtype=torch.long)
    tgt_in = torch.full((B, T), pad, dtype=torch.long)
    tgt_out = torch.full((B, T), pad, dtype=torch.long)
    for b, i in enumerate(idx):
        s, t = pairs[i]
        if s:
            src[b, :len(s)] = torch.tensor(s)
            src_len[b] = len(s)
        tgt_in[b, 0] = bos
        tgt_in[b, 1:len(t) + 1] = torch.tensor(t, dtype=torch.long)
        tgt_out[b, :len(t)] = torch.tensor(t, dtype=torch.long)
        tgt_out[b, len(t)] = eos
    return src, src_len, tgt_in, tgt_out


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not embeddings, biases). Fused: one kernel
    for all tensors, measured 10 ms a step instead of 54 ms at the reference size (9.6 M
    parameters, 1 thread), a few % of a training step."""
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "emb" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() > 1 and "emb" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):          # a build without the fused CPU kernel
        return torch.optim.AdamW(groups, lr=lr)


def _autocast(on: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


@torch.no_grad()
def evaluate(model, pairs: Sequence[Pair], *, bos: int, eos: int, pad: int = 0,
             batch_size: int = 128, bf16: bool = False, exclude: Iterable[int] = (),
             stepwise: bool = False) -> dict:
    """The one teacher-forced scorer: mean NLL per target token (nats, <eos> included) and
    perplexity. `exclude`: target ids left unscored (still fed as input), e.g. punctuation.
    `stepwise`: score through `model.decode_step`, one step at a time as generation runs it,
    so any decoder works (a `Seq2Seq`, or `shared.fp16.Fp16Decoder`)."""
    was = getattr(model, "training", False)
    model.eval()
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
    exclude = list(exclude)
    total, count = 0.0, 0
    for j in range(0, len(order), batch_size):
        src, src_len, tgt_in, tgt_out = collate(pairs, order[j:j + batch_size], bos, eos, pad)
        for e in exclude:                    # unscored: the loss skips <pad> targets
            tgt_out = tgt_out.masked_fill(tgt_out.eq(e), pad)
        with _autocast(bf16):
            loss, n = (_stepwise(model, src, src_len, tgt_in, tgt_out, pad) if stepwise
                       else model(src, src_len, tgt_in, tgt_out))
        total, count = total + float(loss), count + int(n)
    if was:
        model.train()
    nll = total / max(count, 1)
    return {"nll": nll, "ppl": math.exp(min(nll, 50)), "tokens": count}


def _stepwise(decoder, src, src_len, tgt_in, tgt_out, pad: int):
    """(summed NLL of non-pad targets, their count) through decode_step."""
    state = decoder.encode(src, src_len)
    total, keep = torch.zeros(()), tgt_out.ne(pad)
    for t in range(tgt_in.size(1)):
        logits, state = decoder.decode_step(tgt_in[:, t], state)
        nll = F.cross_entropy(logits.float(), tgt_out[:, t], reduction="none")
        total = total + nll[keep[:, t]].sum()
    return total, keep.sum()


class Trainer:
    """`Trainer(model, train, validation, cfg, out_dir, bos=, eos=).fit()`.
    Under `torchrun` each process reads its share of every global batch."""

    def __init__(self, model: Seq2Seq, train: Sequence[Pair], validation: Sequence[Pair],
                 cfg: TrainConfig, out_dir: str | Path, *, bos: int, eos: int, pad: int = 0,
                 progress: bool = True):
        cfg.validate()
        self.cfg, self.out = cfg, Path(out_dir)
        self.bos, self.eos, self.pad = bos, eos, pad
        lim = (cfg.max_src_len, cfg.max_tgt_len)
        self.train = clip_pairs(train, *lim, what="training data")
        self.validation = clip_pairs(validation, *lim, what="validation data")
        self.model = model
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.ddp = (torch.nn.parallel.DistributedDataParallel(model) if self.world > 1
                    else model)
        self.opt = adamw(model, cfg.lr, cfg.weight_decay)
        self.steps_per_epoch = len(batches_for_epoch(self.train, cfg, 0))
        # the schedule spans all epochs; max_steps only stops early (so a run cut in two
        # sees the same learning rates as one run)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.state = {"step": 0, "epoch": 0, "batch": 0, "best_val": None, "bad_epochs": 0,
                      "stopped": None}
        self.progress = progress and self.rank == 0
        self.out.mkdir(parents=True, exist_ok=True)
        recover_dir(self.out / "checkpoint")
        if (self.out / "checkpoint" / "state.json").exists():
            meta = load_training_state(self.out / "checkpoint", model, self.opt)
            self.state = meta["state"]
            if self.state["stopped"] in ("max_steps", "max_seconds"):  # may go further
                self.state["stopped"] = None
        self.precision = self._precision()
        self.bf16 = self.precision["precision"] == "bf16"

    def _precision(self) -> dict:
        """The precision to train in, with the probe's figures: the checkpoint's on resume
        (exact resume needs the same arithmetic), else measured or forced by the config.
        Under torchrun rank 0 decides for all."""
        if "precision" in self.state:
            return dict(self.state["precision"], resumed=True)
        batch = max(1, self.cfg.batch_size // self.world)
        rec = resolve(self.cfg.bf16, self.model, batch).record()
        if self.world > 1:
            pick = torch.tensor([rec["precision"] == "bf16"], dtype=torch.long)
            dist.broadcast(pick, 0)
            rec["precision"] = "bf16" if int(pick) else "fp32"
        rec["setting"] = self.cfg.bf16
        self.state["precision"] = rec
        if self.progress:
            tqdm.write(f"precision: {rec['precision']} (setting {self.cfg.bf16}; probe seconds per "
                       f"step {rec['probe_s']}; CPU flags {' '.join(rec['cpu_flags'])})")
        return rec

    # -- one optimiser step ----------------------------------------------------------------
    def _step(self, idx: list[int]) -> tuple[float, int, float]:
        cfg = self.cfg
        mine = idx[self.rank::self.world]            # this process's share of the global batch
        weight = 1.0
        if not mine:          # a global batch smaller than the world: this rank still joins the
            mine, weight = idx[:1], 0.0       # gradient all-reduce, with a share that weighs 0
        for g in self.opt.param_groups:
            g["lr"] = lr_at(cfg, self.state["step"], self.total_steps)
        n_local = sum(len(self.train[i][1]) + 1 for i in mine) if weight else 0
        n_global = n_local
        if self.world > 1:
            t = torch.tensor([n_local], dtype=torch.long)
            dist.all_reduce(t)
            n_global = int(t)
        with _autocast(self.bf16):
            loss_sum, _ = self.ddp(*collate(self.train, mine, self.bos, self.eos, self.pad))
        # DDP averages gradients over processes; scaling by world/global tokens makes the
        # result the gradient of (global summed NLL / global tokens), whatever the split.
        loss = loss_sum * (weight * self.world / n_global)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.clip_norm if cfg.clip_norm > 0 else float("inf")))
        mean = float(loss_sum.detach()) / n_local if n_local else 0.0
        if not math.isfinite(mean) or mean > cfg.max_loss:
            raise TrainingDiverged(
                f"training loss became {mean:.3g} at step {self.state['step']} "
                f"(gradient norm {gnorm:.3g}); lower lr (now {cfg.lr}), keep clip_norm > 0, or "
                f"resume from the last checkpoint in {self.out / 'checkpoint'}")
        self.opt.step()
        return mean, n_local, gnorm

    def _log(self, record: dict) -> None:
        # elapsed_s: training wall time summed over every resumed run (for model cards)
        record["elapsed_s"] = round(self.state.get("elapsed_s", 0.0) + time.time() - self._t0, 1)
        if self.rank == 0:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _checkpoint(self) -> None:
        now = time.time()
        self.state["elapsed_s"] = self.state.get("elapsed_s", 0.0) + now - self._t0
        self._t0 = now
        if self.rank == 0:
            save_training_state(self.out / "checkpoint", self.model, self.opt, self.state,
                                {"train": asdict(self.cfg), "model": vars(self.model.cfg)})
        if self.world > 1:
            dist.barrier()

    def _end_epoch(self) -> bool:
        """Validate, keep the best weights, decide on early stopping. True = stop."""
        metrics = evaluate(self.model, self.validation, bos=self.bos, eos=self.eos,
                           pad=self.pad, bf16=self.bf16)
        st = self.state
        self._log({"epoch": st["epoch"], "step": st["step"], "val_nll": metrics["nll"],
                   "val_ppl": metrics["ppl"]})
        if self.progress:
            tqdm.write(f"epoch {st['epoch'] + 1}: validation nll {metrics['nll']:.4f} "
                       f"ppl {metrics['ppl']:.2f}")
        if st["best_val"] is None or metrics["nll"] < st["best_val"]:
            st["best_val"], st["bad_epochs"] = metrics["nll"], 0
            if self.rank == 0:
                save_file(unique_state(self.model), str(self.out / "best.safetensors"))
        else:
            st["bad_epochs"] += 1
        return st["bad_epochs"] >= self.cfg.patience

    def fit(self) -> dict:
        cfg, st = self.cfg, self.state
        self.model.train()
        bar = tqdm(total=min(self.total_steps, cfg.max_steps or self.total_steps),
                   initial=st["step"], disable=not self.progress,
                   unit="step", dynamic_ncols=True)
        t0, tokens = time.time(), 0
        self._t0 = t0
        # SHIYU_KILL_AFTER_STEP=k (tests/test_kill.py): SIGKILL this process right after
        # optimiser step k, before that step's checkpoint, for a kill at a known point
        kill_after = int(os.environ.get("SHIYU_KILL_AFTER_STEP") or 0)
        if st["step"] == 0 or self.precision.get("resumed"):
            self._log({"step": st["step"], **self.precision})
        while st["epoch"] < cfg.epochs and st["stopped"] is None:
            batches = batches_for_epoch(self.train, cfg, st["epoch"])
            while st["batch"] < len(batches):
                if cfg.max_steps and st["step"] >= cfg.max_steps:
                    st["stopped"] = "max_steps"
                    break
                loss, n, gnorm = self._step(batches[st["batch"]])
                st["step"] += 1
                st["batch"] += 1
                if st["step"] == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                tokens += n * self.world
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if st["step"] % cfg.log_every == 0:
                    self._log({"step": st["step"], "epoch": st["epoch"], "loss": loss,
                               "lr": self.opt.param_groups[0]["lr"], "grad_norm": gnorm,
                               "tokens_per_s": tokens / (time.time() - t0)})
                if cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0:
                    self._checkpoint()
                if cfg.max_seconds and time.time() - t0 >= cfg.max_seconds:
                    st["stopped"] = "max_seconds"     # checked after a step: at least one runs
                    break
            if st["stopped"] is not None:
                break
            stop = self._end_epoch()
            st["epoch"] += 1
            st["batch"] = 0
            if stop:
                st["stopped"] = "early_stopping"
            self._checkpoint()
        bar.close()
        self._checkpoint()
        return {"steps": st["step"], "epochs": st["epoch"], "best_val_nll": st["best_val"],
                "stopped": st["stopped"] or "epochs", "seconds": time.time() - t0}


def init_distributed() -> bool:
    """Join the process group when launched by torchrun. Returns True when distributed."""
    if "RANK" not in os.environ or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    # leave the group before the interpreter tears down: without it gloo's destructor may
    # abort a rank whose peer exited first (seen once as SIGABRT in rank 1 of the torchrun
    # test). No barrier here: a rank that failed must not hang the others.
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return True
