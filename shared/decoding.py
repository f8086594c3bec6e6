"""Decoding, written once for every task: greedy, temperature / top-k / top-p sampling, beam
search with a length penalty, repetition penalty, no-repeat-n-gram, batched and streaming.

Task rules plug in through a `Constraint`: an object with per-sequence state that sees the
tokens just chosen for all R rows and answers with a boolean (R, vocab) mask of allowed tokens.
Scores are the model's mean log-probability per generated token (nats, temperature 1, before
any rule or penalty), so they compare across decoding settings.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from dataclasses import dataclass
from typing import Iterator, Literal, Optional, Protocol, Sequence

import torch

from .cli import is_number, shown
from .model import Seq2Seq
from .rules import NoRepeatNGram, RepetitionPenalty


TEMPERATURES = (0.01, 100.0)     # outside, the division overflows or rounds to nothing


@dataclass
class GenerationConfig:
    strategy: Literal["greedy", "sample", "beam"] = "sample"
    max_len: int = 128
    temperature: float = 1.0
    top_k: int = 0                 # 0 = off
    top_p: float = 1.0             # 1.0 = off
    beam_size: int = 4
    length_penalty: float = 1.0    # beam: rank by sum_logp / ((5 + len) / 6) ** alpha (GNMT)
    repetition_penalty: float = 1.0  # > 1 discourages tokens already generated (CTRL)
    no_repeat_ngram: int = 0       # n > 0 forbids repeating any n-gram within a sequence
    seed: Optional[int] = None     # row i uses derive_seed(seed, i) unless seeds are given
    bf16: bool = False             # run the model under CPU bf16 autocast

    def validate(self) -> None:
        """The one check of the sampling parameters (writers, CLIs and the app rely on it)."""
        lo, hi = TEMPERATURES
        if not (is_number(self.temperature) and lo <= self.temperature <= hi):
            raise ValueError(f"temperature must be a number from {lo} to {hi:g}, "
                             f"got {shown(self.temperature)}")
        if not (is_number(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {shown(self.top_p)}")
        if not (is_number(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError(f"repetition_penalty must be a positive number, got "
                             f"{shown(self.repetition_penalty)}")
        if self.max_len <= 0:
            raise ValueError(f"max_len must be positive, got {self.max_len}")
        if self.top_k < 0 or self.beam_size < 1 or self.no_repeat_ngram < 0:
            raise ValueError("top_k and no_repeat_ngram must be >= 0, beam_size >= 1")

    def processors(self, pad_id: int) -> list:
        """The soft rules this configuration asks for (shared/rules.py), in the order they run."""
        out: list = []
        if self.repetition_penalty != 1.0:
            out.append(RepetitionPenalty(self.repetition_penalty, pad_id))
        if self.no_repeat_ngram > 0:
            out.append(NoRepeatNGram(self.no_repeat_ngram))
        return out


class Constraint(Protocol):
    """Batched, incremental task rules. Rows are sequences being decoded (beams included).
    Small reusable ones and their combination (`AllOf`) live in shared/rules.py."""

    def begin(self, rows: torch.Tensor) -> Optional[torch.Tensor]:
        """rows[r] = index of the input item row r decodes. Returns the first step's mask
        (R, vocab) of allowed tokens, or None for no restriction."""

    def step(self, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        """tokens: (R,) just chosen (pad for rows already finished). Returns the next mask."""

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: new row r continues old row index[r]."""

    # optional: bias() -> (rows, ids, nats) added to those rows' log-probs at the coming step
    # (weighted decoding, after the masks), or None; `generate` scores stay the model's own


def derive_seed(seed: int, i: int) -> int:
    """A seed for item i that does not depend on batching, order or sharding."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:7], "big")


@dataclass
class Generation:
    tokens: list[list[int]]        # without <bos>/<eos>/<pad>
    scores: list[float]            # mean log-prob per token (nats), <eos> included
    finished: list[bool]           # False = hit max_len before <eos>
    removed_mass: float = 0.0      # mean probability mass per step the constraint masked out
    steps: int = 0


@dataclass
class StepOutput:
    tokens: torch.Tensor           # (R,) tokens chosen this step (pad after <eos>)
    finished: torch.Tensor         # (R,) bool, after this step  (these two are the decoder's
    live: torch.Tensor             # (R,) bool: the row was still generating at this step
                                   # own, shared from step to step: never modify in place)
    logp: torch.Tensor             # (R,) the model's log-prob of the chosen token (raw, T = 1)
    kept: Optional[torch.Tensor]   # (R,) probability mass the hard rules kept (<pad>, <bos>
                                   # and <unk> count as removed), None if no rule


class Collector:
    """Accumulates `StepOutput`s into sequences and scores: what `generate` returns, and what a
    streaming caller reads while decoding goes on (the same numbers either way)."""

    def __init__(self, rows: int, eos_id: int, pad_id: int):
        self.eos, self.pad = eos_id, pad_id
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.logp, self.count = torch.zeros(rows), torch.zeros(rows)
        self.finished = [False] * rows
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, step: StepOutput) -> None:
        self.logp += torch.where(step.live, step.logp, 0.0)
        self.count += step.live.float()
        for seq, t, live in zip(self.tokens, step.tokens.tolist(), step.live.tolist()):
            if live and t not in (self.eos, self.pad):
                seq.append(t)
        self.finished = step.finished.tolist()
        if step.kept is not None:
            self.kept.append((step.kept, step.live))

    def scores(self) -> list[float]:
        return (self.logp / self.count.clamp(min=1)).tolist()

    def result(self) -> Generation:
        removed, steps = 0.0, 0
        if self.kept:
            kept, live = (torch.stack(x) for x in zip(*self.kept))
            steps = int(live.sum())
            removed = float((1 - kept)[live].sum()) / max(steps, 1)
        return Generation(self.tokens, self.scores(), self.finished, removed, steps)


def _autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _sample(logits: torch.Tensor, cfg: GenerationConfig, u: torch.Tensor) -> torch.Tensor:
    """One token per row from (R, V) logits (-inf = excluded) after temperature, top-k and
    top-p; u: (R, 1) uniforms in (0, 1], one per row from the row's own generator.
    With top-k the draw runs over the k best only, sorted: no full-vocabulary pass after the
    top-k itself (each tensor op costs microseconds of dispatch on a small CPU; see
    `python -m poetry.evaluate poem` speed)."""
    if cfg.temperature != 1.0:
        logits = logits / cfg.temperature
    idx = None
    if cfg.top_k > 0:
        logits, idx = logits.topk(min(cfg.top_k, logits.size(-1)), -1)
    elif cfg.top_p < 1.0:
        logits, idx = logits.sort(-1, descending=True)
    probs = logits.softmax(-1)
    if cfg.top_p < 1.0:        # sorted: drop a token once the mass before it reaches top_p
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= cfg.top_p, 0.0)
    cdf = probs.cumsum(-1)
    # u > 0, so the first index whose cdf reaches u * total has a positive probability
    pick = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp_(max=cdf.size(1) - 1)
    return (pick if idx is None else idx.gather(1, pick)).view(-1)


class _Decoder:
    """Shared bookkeeping for one batched decode."""

    def __init__(self, model: Seq2Seq, src, src_len, cfg: GenerationConfig,
                 constraint, rows: torch.Tensor, bos_id: int, eos_id: int, pad_id: int,
                 unk_id: int = 1):
        self.model, self.cfg, self.constraint = model, cfg, constraint
        self.bos, self.eos, self.pad, self.unk = bos_id, eos_id, pad_id, unk_id
        with torch.no_grad(), _autocast(cfg.bf16):
            state = model.encode(src, src_len)
        self.state = state.select(rows)
        self.R = len(rows)
        self.mask = constraint.begin(rows) if constraint is not None else None
        self.prev = torch.full((self.R,), bos_id, dtype=torch.long)
        self._finish(torch.zeros(self.R, dtype=torch.bool))
        self.processors = cfg.processors(pad_id)
        self.history = torch.zeros(self.R, 0, dtype=torch.long)   # kept for the processors
        self.never: Optional[torch.Tensor] = None   # (V,) 0, or -inf for pad, bos and unk
        self.kept: Optional[torch.Tensor] = None    # (R,) mass the rules kept at this step

    def logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (raw log-probs, processed log-probs) for the next token, both (R, V):
        hard rules (never <pad>/<bos>/<unk>, the constraint's mask), then soft processors."""
        with torch.no_grad(), _autocast(self.cfg.bf16):
            logits, self.state = self.model.decode_step(self.prev, self.state)
        raw = logits.float().log_softmax(-1)
        if self.never is None:
            self.never = torch.zeros(raw.size(1))
            self.never[[self.pad, self.bos, self.unk]] = float("-inf")
        hard = self.never if self.mask is None else self.never.masked_fill(~self.mask,
                                                                           float("-inf"))
        allowed = raw + hard
        if self.mask is not None:      # what the rules (and never <pad>/<bos>/<unk>) kept
            self.kept = allowed.exp().sum(-1)
        out = allowed
        if self.processors:
            scores = logits.float()
            for p in self.processors:
                scores = p(self.history, scores)
            out = scores.log_softmax(-1) + hard
            dead = torch.isneginf(out.amax(-1))
            if bool(dead.any()):
                out[dead] = allowed[dead]       # soft rules yield to the hard ones
        bias = self.constraint.bias() if hasattr(self.constraint, "bias") else None
        if bias is not None:                    # weighted decoding: never revives a -inf
            out = out.index_put_(bias[:2], bias[2], accumulate=True)   # a fresh tensor
        if self.mask is not None:
            empty = torch.isneginf(out.amax(-1))
            if bool(empty.any()):               # a rule that allows nothing ends the row
                out[empty, self.eos] = 0.0
        return raw, out

    def _finish(self, finished: torch.Tensor) -> None:
        """Set the (R,) finished flags and what follows from them (computed here, when they
        change, not at every step of greedy or sampled decoding: at batch 1 each tensor op
        costs what a product's row does; beam search reorders, so it sets them every step)."""
        self.finished, self.live = finished, ~finished
        self.any_finished, self.all_finished = bool(finished.any()), bool(finished.all())

    def advance(self, tokens: torch.Tensor, logp: Optional[torch.Tensor] = None) -> StepOutput:
        """Feed the chosen tokens (R,); logp: their raw log-probs (R,), for the step's record."""
        live = self.live
        if self.any_finished:
            tokens = tokens.masked_fill(self.finished, self.pad)
        if self.processors:
            self.history = torch.cat([self.history, tokens.view(-1, 1)], 1)
        if self.eos in tokens.tolist():
            self._finish(self.finished | tokens.eq(self.eos))
        self.prev = tokens
        kept, self.kept = self.kept, None
        if self.constraint is not None:
            self.mask = self.constraint.step(tokens)
        return StepOutput(tokens, self.finished, live,
                          torch.zeros(self.R) if logp is None else logp, kept)

    def reorder(self, index: torch.Tensor) -> None:
        self.state = self.state.select(index)
        self._finish(self.finished[index])
        self.prev = self.prev[index]
        self.history = self.history[index]
        if self.mask is not None:
            self.mask = self.mask[index]
        if self.constraint is not None:
            self.constraint.reorder(index)


def _seeds(n: int, cfg: GenerationConfig, seeds: Optional[Sequence[int]]) -> list[int]:
    if seeds is not None:
        if len(seeds) != n:
            raise ValueError(f"got {len(seeds)} seeds for {n} sequences")
        return list(seeds)
    base = cfg.seed if cfg.seed is not None else int(torch.randint(0, 2**31, (1,)))
    return [derive_seed(base, i) for i in range(n)]


def stream(model: Seq2Seq, src: torch.Tensor, src_len: torch.Tensor, cfg: GenerationConfig,
           *, bos_id: int, eos_id: int, pad_id: int = 0, constraint=None,
           seeds: Optional[Sequence[int]] = None) -> Iterator[StepOutput]:
    """Greedy or sampled decoding of a batch, one `StepOutput` per step.
    Each row draws from its own generator seeded by `seeds[i]`, so row i's output does not
    depend on the other rows (up to fp32 rounding of batched matmuls)."""
    cfg.validate()
    if cfg.strategy == "beam":
        raise ValueError("beam search does not stream; use generate()")
    model.eval()
    B = src.size(0)
    gens = [random.Random(s) for s in _seeds(B, cfg, seeds)]
    dec = _Decoder(model, src, src_len, cfg, constraint, torch.arange(B), bos_id, eos_id, pad_id)
    for _ in range(cfg.max_len):
        raw, logits = dec.logits()
        if cfg.strategy == "greedy":
            tokens = logits.argmax(-1)
        else:
            u = torch.tensor([[1.0 - g.random()] for g in gens])      # (B, 1) in (0, 1]
            tokens = _sample(logits, cfg, u)
        step = dec.advance(tokens, raw.gather(1, tokens.view(B, 1)).view(B))
        yield step
        if dec.all_finished:
            break


def _beam(model, src, src_len, cfg, constraint, bos_id, eos_id, pad_id) -> Generation:
    B, K = src.size(0), cfg.beam_size
    rows = torch.arange(B).repeat_interleave(K)
    dec = _Decoder(model, src, src_len, cfg, constraint, rows, bos_id, eos_id, pad_id)
    R = B * K
    beam_logp = torch.zeros(R)         # processed (masked, penalised) log-prob sum: ranks beams
    beam_raw = torch.zeros(R)          # raw model log-prob sum: the reported score
    lengths = torch.zeros(R)
    beam_logp.view(B, K)[:, 1:] = float("-inf")   # all beams start identical: keep one
    tokens_hist = torch.zeros(R, 0, dtype=torch.long)
    removed = Collector(R, eos_id, pad_id)         # only its record of the rules' mass is used

    def norm(s, n):
        return s / ((5.0 + n) / 6.0) ** cfg.length_penalty

    for _ in range(cfg.max_len):
        raw, logits = dec.logits()
        logp = logits.log_softmax(-1)
        fin = dec.finished
        V = logp.size(1)
        # finished beams continue only with <pad> at no cost and no added length
        logp = torch.where(fin.view(R, 1), torch.full_like(logp, float("-inf")), logp)
        logp[fin, pad_id] = 0.0
        cand_sum = beam_logp.view(R, 1) + logp                           # (R, V)
        cand_len = (lengths + (~fin).float()).view(R, 1).expand(R, V)
        ranked = norm(cand_sum, cand_len).view(B, K * V)
        top = ranked.topk(K, -1).indices                                 # (B, K)
        src_beam = (top // V + torch.arange(B).view(B, 1) * K).view(R)
        tok = (top % V).view(R)
        beam_logp = cand_sum.view(B, K * V).gather(1, top).view(R)
        raw_add = torch.where(fin[src_beam], torch.zeros(R),
                              raw[src_beam].gather(1, tok.view(R, 1)).view(R))
        beam_raw = beam_raw[src_beam] + raw_add
        lengths = lengths[src_beam] + (~fin[src_beam]).float()
        tokens_hist = torch.cat([tokens_hist[src_beam], tok.view(R, 1)], 1)
        dec.reorder(src_beam)
        removed.add(dec.advance(tok))
        if dec.all_finished:
            break
    best = norm(beam_logp, lengths).view(B, K).argmax(-1) + torch.arange(B) * K
    rec = removed.result()
    out = Generation([], [], [], rec.removed_mass, rec.steps)
    for r in best.tolist():
        seq = [t for t in tokens_hist[r].tolist() if t not in (eos_id, pad_id)]
        out.tokens.append(seq)
        out.scores.append(float(beam_raw[r] / lengths[r].clamp(min=1)))
        out.finished.append(bool(dec.finished[r]))
    return out


def generate(model: Seq2Seq, src: torch.Tensor, src_len: torch.Tensor, cfg: GenerationConfig,
             *, bos_id: int, eos_id: int, pad_id: int = 0, constraint=None,
             seeds: Optional[Sequence[int]] = None) -> Generation:
    """Decode a batch to completion. src: (batch, time) padded ids; src_len: (batch,)."""
    cfg.validate()
    if cfg.strategy == "beam":
        model.eval()
        return _beam(model, src, src_len, cfg, constraint, bos_id, eos_id, pad_id)
    out = Collector(src.size(0), eos_id, pad_id)
    for step in stream(model, src, src_len, cfg, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                       constraint=constraint, seeds=seeds):
        out.add(step)
    return out.result()


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0):
    """List of id lists -> (batch, max_len) LongTensor and lengths (batch,)."""
    lens = torch.tensor([max(len(s), 1) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lens.max()) if len(seqs) else 1), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
    return out, lens
