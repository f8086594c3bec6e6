"""A learned critic: the core's encoder and a small head, one piece for every task.

    text ids ─emb─▶ encoder (the core's Stack: (bi)LSTM/GRU, as in shared/model.py)
                      │ final states of the top layer, both directions  ┐
                      │ mean of its outputs over the text               ┘─▶ head (MLP) ─▶ logit

The logit says how much a text reads like the real texts it was trained on, against the
task's own generated ones (Holtzman et al. 2018, "Learning to Write with Cooperative
Discriminators"): a writer decodes more candidates and ranks them by the model's score plus
`weight` x this logit. Each task builds its own pairs of real and generated texts (a poem, a
tune, a conversation's context and reply joined by a separator) in the generator's own
vocabulary; this module trains, saves, loads and runs the critic and knows no task.

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

    def _summary_exact(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) without padding -> (B, 2 * hidden): final states and mean output."""
        out, finals = self.encoder(self.drop(self.emb(ids)))
        top = finals[-1][0] if self.cfg.cell == "lstm" else finals[-1]     # (dirs, B, H/dirs)
        return torch.cat([torch.cat(list(top.unbind(0)), -1), out.mean(1)], -1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) right-padded; lengths: (B,). Returns logits (B,). Rows are encoded in
        groups of equal length, so the backward direction never reads padding."""
        lengths = lengths.clamp(min=1, max=ids.size(1))
        summary = None
        for n in torch.unique(lengths).tolist():
            idx = (lengths == n).nonzero().flatten()
            part = self._summary_exact(ids[idx, :n])
            if summary is None:
                summary = part.new_empty(ids.size(0), part.size(1))
            summary[idx] = part
        return self.head(summary).squeeze(-1)

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


def train(cfg: CriticConfig, real: dict[str, list], fake: dict[str, list], epochs: int = 6,
          batch: int = 64, lr: float = 2e-3, seed: int = 0, log=print,
          init_embeddings: torch.Tensor | None = None) -> tuple[Critic, dict]:
    """real / fake: {"train": [ids, ...], "validation": [...], "test": [...]}. Trains on
    balanced batches (binary cross-entropy), keeps the epoch with the best validation accuracy;
    returns the critic and its figures (accuracy per split)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    critic = Critic(cfg)
    if init_embeddings is not None:           # e.g. the generator's own character embeddings
        with torch.no_grad():
            n, d = min(init_embeddings.shape[0], cfg.vocab), min(init_embeddings.shape[1],
                                                                   cfg.emb_dim)
            critic.emb.weight[:n, :d] = init_embeddings[:n, :d]
    opt = torch.optim.AdamW(critic.parameters(), lr=lr, weight_decay=0.01)
    pairs = [(t, 1.0) for t in real["train"]] + [(t, 0.0) for t in fake["train"]]
    steps = epochs * math.ceil(len(pairs) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1),
                                                pct_start=0.1)
    best, best_state, history = -1.0, None, []
    t0 = time.time()
    for epoch in range(epochs):
        critic.train()
        rng.shuffle(pairs)
        # length-sorted chunks make equal-length groups (few encoder calls per batch)
        chunks = [pairs[k:k + batch * 50] for k in range(0, len(pairs), batch * 50)]
        batches = []
        for chunk in chunks:
            chunk = sorted(chunk, key=lambda p: len(p[0]))
            batches += [chunk[k:k + batch] for k in range(0, len(chunk), batch)]
        rng.shuffle(batches)
        total = 0.0
        for b in batches:
            ids, lengths = critic.pad([t for t, _ in b])
            y = torch.tensor([lab for _, lab in b])
            loss = F.binary_cross_entropy_with_logits(critic(ids, lengths), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        acc = accuracy(critic, real["validation"], fake["validation"])
        history.append({"epoch": epoch, "train_loss": round(total / len(pairs), 4),
                        "validation_accuracy": round(acc, 4)})
        log(f"critic epoch {epoch + 1}/{epochs}: loss {total / len(pairs):.4f}, "
            f"validation accuracy {acc:.4f} ({time.time() - t0:.0f} s)")
        if acc > best:
            best = acc
            best_state = {k: v.detach().clone() for k, v in critic.state_dict().items()}
    critic.load_state_dict(best_state)
    figures = {"history": history, "seconds": round(time.time() - t0, 1),
               "accuracy": {s: round(accuracy(critic, real[s], fake[s]), 4)
                            for s in ("train", "validation", "test") if real.get(s)},
               "texts": {s: {"real": len(real.get(s, [])), "generated": len(fake.get(s, []))}
                         for s in ("train", "validation", "test")}}
    return critic.eval(), figures


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
    if vocab is not None and critic.cfg.vocab != vocab:
        raise ValueError(f"the critic in {folder} reads {critic.cfg.vocab} token ids, its model "
                         f"{vocab}: rebuild it for this model")
    return critic.eval()
