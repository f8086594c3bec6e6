"""A learned critic: the core's encoder and a small head, one piece for every task.

    text ids ─emb─▶ encoder (the core's Stack: (bi)LSTM/GRU, as in shared/model.py)
                      │ final states of the top layer, both directions  ┐
                      │ mean of its outputs over the text               ┘─▶ head (MLP) ─▶ logit

Two ways to read, one encoder. **One text** (`score`): the logit says how much a text reads
like the real texts it was trained on, against the task's own generated ones (Holtzman et al. 2018, "Learning to Write with Cooperative
Discriminators"): a writer decodes more candidates and ranks them by the model's score plus
`weight` x this logit. Each task builds its own pairs of real and generated texts (a poem, a
tune, a conversation's context and reply joined by a separator) in the generator's own
vocabulary; this module trains, saves, loads and runs the critic and knows no task. **A pair**
(`match`, `pair=True`): a conversation's context and a candidate reply are encoded apart by
the same encoder and scored by a bilinear product of their summaries (Lowe et al. 2015's
dual encoder), trained with the other replies of each batch as negatives, so a pool of replies
can be encoded once and each candidate costs one dot product.

Files beside the model it serves: `critic.safetensors` (weights, stored as float16 and run as
float32) and `critic.json` (config, training figures, held-out accuracy, what the pairs were).
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .checkpoint import add_files
from .model import Stack

WEIGHTS, CARD = "critic.safetensors", "critic.json"


@dataclass
class CriticConfig:
    vocab: int
    cell: str = "lstm"
    emb_dim: int = 128
    hidden: int = 256            # both directions together, as the core's encoder
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.2
    head: int = 128
    max_len: int = 256           # ids a text is cut to (its end kept: the part a reader ends on)
    pad_id: int = 0
    pair: bool = False           # a context and a reply (match) instead of one text (score)

    def validate(self) -> None:
        for key in ("vocab", "emb_dim", "hidden", "layers", "head", "max_len"):
            if getattr(self, key) <= 0:
                raise ValueError(f"critic config key '{key}' must be positive")
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"critic cell must be lstm or gru, got {self.cell!r}")
        if self.bidirectional and self.hidden % 2:
            raise ValueError("critic hidden must be even with a bidirectional encoder")


class Critic(nn.Module):
    def __init__(self, cfg: CriticConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        dirs = 2 if cfg.bidirectional else 1
        self.emb = nn.Embedding(cfg.vocab, cfg.emb_dim, padding_idx=cfg.pad_id)
        self.encoder = Stack(cfg.cell, cfg.emb_dim, cfg.hidden // dirs, cfg.layers,
                             cfg.bidirectional, cfg.dropout, True)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Sequential(nn.Linear(2 * cfg.hidden, cfg.head), nn.Tanh(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.head, 1))
        if cfg.pair:                     # context summary -> the space of reply summaries
            self.bilinear = nn.Linear(2 * cfg.hidden, 2 * cfg.hidden, bias=False)

    def _summary_exact(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) without padding -> (B, 2 * hidden): final states and mean output."""
        out, finals = self.encoder(self.drop(self.emb(ids)))
        top = finals[-1][0] if self.cfg.cell == "lstm" else finals[-1]     # (dirs, B, H/dirs)
        return torch.cat([torch.cat(list(top.unbind(0)), -1), out.mean(1)], -1)

    def summary(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) right-padded; lengths: (B,). Returns (B, 2 * hidden). Rows are encoded
        in groups of equal length, so the backward direction never reads padding."""
        lengths = lengths.clamp(min=1, max=ids.size(1))
        summary = None
        for n in torch.unique(lengths).tolist():
            idx = (lengths == n).nonzero().flatten()
            part = self._summary_exact(ids[idx, :n])
            if summary is None:
                summary = part.new_empty(ids.size(0), part.size(1))
            summary[idx] = part
        return summary

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One text's logits (B,)."""
        return self.head(self.summary(ids, lengths)).squeeze(-1)

    def pair_logits(self, ctx, ctx_len, rep, rep_len) -> torch.Tensor:
        """(B, R): every context against every reply, scaled by the summary's width."""
        c = self.bilinear(self.summary(ctx, ctx_len))
        r = self.summary(rep, rep_len)
        return c @ r.T / math.sqrt(c.size(1))

    def match(self, contexts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]],
              batch: int = 256) -> list[float]:
        """The logit of each (context, reply) pair, pair by pair. A context that several pairs
        share (one conversation's candidates) is encoded once."""
        self.eval()
        keys = [tuple(c) for c in contexts]
        unique = list(dict.fromkeys(keys))
        where = {k: i for i, k in enumerate(unique)}
        out: list[float] = []
        with torch.inference_mode():
            ctx = torch.cat([self.bilinear(self.summary(*self.pad(unique[k:k + batch])))
                             for k in range(0, len(unique), batch)]) if unique else None
            for k in range(0, len(replies), batch):
                c = ctx[[where[x] for x in keys[k:k + batch]]]
                r = self.summary(*self.pad(replies[k:k + batch]))
                out += ((c * r).sum(-1) / math.sqrt(c.size(1))).tolist()
        return out

    def score(self, texts: Sequence[Sequence[int]], batch: int = 256) -> list[float]:
        """Logits of token-id sequences (higher: reads more like the real texts)."""
        self.eval()
        out: list[float] = []
        with torch.inference_mode():
            for k in range(0, len(texts), batch):
                ids, lengths = self.pad(texts[k:k + batch])
                out += self(ids, lengths).tolist()
        return out

    def pad(self, texts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        cut = [list(t)[-self.cfg.max_len:] or [self.cfg.pad_id] for t in texts]
        lengths = torch.tensor([len(t) for t in cut])
        ids = torch.full((len(cut), int(lengths.max())), self.cfg.pad_id, dtype=torch.long)
        for i, t in enumerate(cut):
            ids[i, :len(t)] = torch.tensor(t)
        return ids, lengths


# -- training ---------------------------------------------------------------------------
def accuracy(critic: Critic, real: Sequence, fake: Sequence) -> float:
    """The share of texts put on their own side of 0 (real > 0 > generated), classes weighed
    equally."""
    r, f = critic.score(real), critic.score(fake)
    return 0.5 * (sum(x > 0 for x in r) / max(len(r), 1) + sum(x < 0 for x in f) / max(len(f), 1))


def _fit(cfg: CriticConfig, epochs: int, lr: float, seed: int, init_embeddings,
         batches, loss_of, validate, what: str, log) -> tuple[Critic, list, float]:
    """The training both readings share: a fresh critic (its embeddings started from
    `init_embeddings` where given, e.g. the generator's own), AdamW with a one-cycle schedule,
    clipped gradients, and the epoch whose `validate()` is best kept. `batches(rng)` gives an
    epoch's batches, `loss_of(critic, batch)` a batch's loss and size."""
    torch.manual_seed(seed)
    critic = Critic(cfg)
    if init_embeddings is not None:
        with torch.no_grad():
            n, d = min(init_embeddings.shape[0], cfg.vocab), min(init_embeddings.shape[1],
                                                                   cfg.emb_dim)
            critic.emb.weight[:n, :d] = init_embeddings[:n, :d]
    opt = torch.optim.AdamW(critic.parameters(), lr=lr, weight_decay=0.01)
    plan = [batches(random.Random(seed + e)) for e in range(epochs)]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, pct_start=0.1,
                                                total_steps=max(sum(map(len, plan)), 1))
    best, best_state, history = -1.0, None, []
    t0 = time.time()
    for epoch, epoch_batches in enumerate(plan):
        critic.train()
        total, count = 0.0, 0
        for b in epoch_batches:
            loss, n = loss_of(critic, b)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
            opt.step()
            sched.step()
            total, count = total + loss.item() * n, count + n
        score = validate(critic)
        history.append({"epoch": epoch, "train_loss": round(total / max(count, 1), 4),
                        f"validation_{what}": round(score, 4)})
        log(f"critic epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f}, validation "
            f"{what.replace('_', ' ')} {score:.4f} ({time.time() - t0:.0f} s)")
        if score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in critic.state_dict().items()}
    critic.load_state_dict(best_state)
    return critic.eval(), history, round(time.time() - t0, 1)


def train(cfg: CriticConfig, real: dict[str, list], fake: dict[str, list], epochs: int = 6,
          batch: int = 64, lr: float = 2e-3, seed: int = 0, log=print,
          init_embeddings: torch.Tensor | None = None) -> tuple[Critic, dict]:
    """real / fake: {"train": [ids, ...], "validation": [...], "test": [...]}. Trains on
    balanced batches (binary cross-entropy), keeps the epoch with the best validation accuracy;
    returns the critic and its figures (accuracy per split)."""
    pairs = [(t, 1.0) for t in real["train"]] + [(t, 0.0) for t in fake["train"]]

    def batches(rng):
        shuffled = list(pairs)
        rng.shuffle(shuffled)
        # length-sorted chunks make equal-length groups (few encoder calls per batch)
        out = []
        for k in range(0, len(shuffled), batch * 50):
            chunk = sorted(shuffled[k:k + batch * 50], key=lambda p: len(p[0]))
            out += [chunk[j:j + batch] for j in range(0, len(chunk), batch)]
        rng.shuffle(out)
        return out

    def loss_of(critic, b):
        ids, lengths = critic.pad([t for t, _ in b])
        y = torch.tensor([lab for _, lab in b])
        return F.binary_cross_entropy_with_logits(critic(ids, lengths), y), len(b)

    critic, history, seconds = _fit(
        cfg, epochs, lr, seed, init_embeddings, batches, loss_of,
        lambda c: accuracy(c, real["validation"], fake["validation"]), "accuracy", log)
    figures = {"history": history, "seconds": seconds,
               "accuracy": {s: round(accuracy(critic, real[s], fake[s]), 4)
                            for s in ("train", "validation", "test") if real.get(s)},
               "texts": {s: {"real": len(real.get(s, [])), "generated": len(fake.get(s, []))}
                         for s in ("train", "validation", "test")}}
    return critic, figures


def train_on_samples(model_dir: str | Path, samples: str | Path, encode, about: dict,
                     epochs: int = 6, max_len: int = 256, out: str | Path | None = None,
                     log=print) -> dict:
    """Fit a critic for the model in `model_dir` on a task's `samples.jsonl` (rows {split,
    label: 1 real / 0 generated, ...}); `encode(tokenizer, row)` gives a row's ids. Starts from
    the generator's target embeddings, saves beside the model (or in `out`) with `about` and
    the figures, and returns the figures (accuracy per split, the test split held out)."""
    from .checkpoint import load_model
    model, tok, _ = load_model(Path(model_dir))
    rows = [json.loads(x) for x in Path(samples).read_text(encoding="utf-8").splitlines()
            if x.strip()]
    sides: dict = {1: {}, 0: {}}
    for r in rows:
        sides[r["label"]].setdefault(r["split"], []).append(encode(tok, r))
    cfg = CriticConfig(vocab=model.cfg.tgt_vocab, emb_dim=model.cfg.emb_dim, max_len=max_len,
                       pad_id=tok.pad_id)
    critic, figures = train(cfg, sides[1], sides[0], epochs=epochs, log=log,
                            init_embeddings=model.tgt_emb.weight.detach())
    save(critic, out or model_dir, {**about, "samples": str(samples), **figures})
    return figures


def main_for(argv, *, prog: str, doc: str, writer, data: Path, samples_dir: Path, what: str,
             samples, train) -> int:
    """The command line of a task's critic: `samples` writes real texts beside the model's own
    (`samples(writer, data, samples_dir, n, log=...)`), `train` fits the critic on them
    (`train(model_dir, samples_dir, epochs, out, log=...)`, returning its figures)."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog=prog, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["samples", "train"])
    ap.add_argument("--data", type=Path, default=data)
    ap.add_argument("--samples", "--out", dest="samples", type=Path, default=samples_dir,
                    help="the folder of samples.jsonl")
    ap.add_argument("--n", type=int, default=3000, help=f"real {what} (each gets a generated one)")
    ap.add_argument("--model", type=Path, default=None, help=f"default data/models/{writer.MODEL}")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--critic-out", type=Path, default=None,
                    help="train: where the critic goes (default: beside the model)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.n <= 0 or args.epochs <= 0:
        raise ValueError("--n and --epochs must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model or writer.default_dir()
    log = lambda m: print(m, file=sys.stderr, flush=True)
    if args.action == "samples":
        samples(writer.load(model_dir, critic=False), args.data, args.samples, args.n, log=log)
    else:
        figures = train(model_dir, args.samples, args.epochs, args.critic_out, log=log)
        print(json.dumps(figures["accuracy"]))
    return 0


def hits_at_1(critic: Critic, pairs: Sequence[tuple[list, list]], k: int = 20,
              seed: int = 0) -> float:
    """Share of (context, reply) pairs whose reply beats k - 1 replies of other pairs."""
    rng = random.Random(seed)
    replies = [r for _, r in pairs]
    wins = 0
    for i, (ctx, true) in enumerate(pairs):
        others = [replies[j] for j in rng.sample(range(len(replies)), min(k + 2, len(replies)))
                  if j != i][:k - 1]
        s = critic.match([ctx] * (len(others) + 1), [true] + others)
        wins += s[0] > max(s[1:])
    return wins / max(len(pairs), 1)


def train_pairs(cfg: CriticConfig, pairs: dict[str, list], epochs: int = 3, batch: int = 128,
                lr: float = 2e-3, seed: int = 0, log=print,
                init_embeddings: torch.Tensor | None = None,
                hard: dict[str, list] | None = None) -> tuple[Critic, dict]:
    """pairs: {"train": [(context ids, reply ids), ...], "validation": ..., "test": ...};
    hard (optional): per split, a hard negative reply for each pair, scored as one more
    column of its row. In-batch softmax over the batch's replies; the epoch with the best
    validation hits@1 of 20 is kept."""
    if not cfg.pair:
        raise ValueError("train_pairs needs CriticConfig(pair=True)")
    train_pairs_, val = pairs["train"], pairs["validation"][:1000]

    def batches(rng):
        rows = list(range(len(train_pairs_)))
        rng.shuffle(rows)
        return [rows[k:k + batch] for k in range(0, len(rows), batch)
                if len(rows[k:k + batch]) > 1]

    def loss_of(critic, b):
        ctx = critic.pad([train_pairs_[i][0] for i in b])
        reps = [train_pairs_[i][1] for i in b] + ([hard["train"][i] for i in b] if hard else [])
        logits = critic.pair_logits(*ctx, *critic.pad(reps))
        return F.cross_entropy(logits, torch.arange(len(b))), len(b)

    critic, history, seconds = _fit(cfg, epochs, lr, seed, init_embeddings, batches, loss_of,
                                    lambda c: hits_at_1(c, val), "hits_at_1_of_20", log)
    figures = {"history": history, "seconds": seconds,
               "hits_at_1_of_20": {s: round(hits_at_1(critic, pairs[s][:1000]), 4)
                                   for s in ("validation", "test") if pairs.get(s)},
               "pairs": {s: len(pairs.get(s, [])) for s in ("train", "validation", "test")}}
    return critic, figures


# -- files ------------------------------------------------------------------------------
def save(critic: Critic, folder: str | Path, about: dict) -> None:
    """critic.safetensors and critic.json (config + `about`: figures, what the pairs were)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in critic.state_dict().items()},
              str(folder / WEIGHTS))
    (folder / CARD).write_text(json.dumps({"config": asdict(critic.cfg), **about},
                                          ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if (folder / "card.json").exists():          # beside an exported model: its card lists them
        add_files(folder, WEIGHTS, CARD)


def load(folder: str | Path, vocab: int | None = None) -> Critic | None:
    """The critic beside a model, or None where the folder has none. Raises ValueError when
    its files are damaged or it reads another vocabulary than `vocab`."""
    folder = Path(folder)
    if not (folder / WEIGHTS).exists() and not (folder / CARD).exists():
        return None
    try:
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
        critic = Critic(CriticConfig(**card["config"]))
        critic.load_state_dict({k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items()})
    except Exception as e:                   # a damaged or partial critic names its folder
        raise ValueError(f"the critic in {folder} cannot be loaded ({type(e).__name__}: "
                         f"{str(e)[:200]}); rebuild it or remove {WEIGHTS} and {CARD}") from None
    critic.about = {k: v for k, v in card.items() if k != "config"}   # what it was trained on
    if vocab is not None and critic.cfg.vocab != vocab:
        raise ValueError(f"the critic in {folder} reads {critic.cfg.vocab} token ids, its model "
                         f"{vocab}: rebuild it for this model")
    return critic.eval()
