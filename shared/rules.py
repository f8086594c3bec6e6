"""Rules on the next token, as a chain: one small class per rule, run as a list (in the spirit of
HF's `LogitsProcessor` list and fairseq's one-line masks).

Hard rules follow the `Constraint` protocol of `shared.decoding`: per-row state;
`begin(rows)` -> the first (R, V) boolean mask of allowed tokens, or None for no restriction;
`step(tokens)` -> the next mask; `reorder(index)` for beams. `AllOf` runs several as one.
A rule may also weigh tokens without forbidding any (weighted decoding): its optional `bias()`
gives (rows, ids, nats) to add to those rows' log-probs at the coming step, or None.

Soft processors change the scores of tokens the hard rules allow: `(history, logits) -> logits`,
history being (R, t) tokens generated so far (<pad> after <eos>). Decoding applies hard rules
first, then soft processors; where the soft ones leave a row nothing, the hard rules alone
decide (`shared.decoding._Decoder.logits`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


class ForcePrefix:
    """Per input item, the tokens forced at its first positions. None inside a prefix leaves
    that position free, so a poem's punctuation slots and acrostic heads are a prefix with holes."""

    def __init__(self, vocab: int, prefixes: Sequence[Sequence[Optional[int]]]):
        self.V, self.prefixes = vocab, [list(p) for p in prefixes]
        self.longest = max((len(p) for p in self.prefixes), default=0)

    def begin(self, rows: torch.Tensor) -> Optional[torch.Tensor]:
        self.rows, self.pos = rows.tolist(), 0      # rows step together: one position for all
        return self._mask()

    def step(self, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        self.pos += 1
        return self._mask()

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = [self.rows[i] for i in index.tolist()]

    def _mask(self) -> Optional[torch.Tensor]:
        if self.pos >= self.longest:
            return None
        forced = [(k, p[self.pos]) for k, p in enumerate(self.prefixes[r] for r in self.rows)
                  if self.pos < len(p) and p[self.pos] is not None]
        if not forced:
            return None
        rows, ids = zip(*forced)
        mask = torch.ones(len(self.rows), self.V, dtype=torch.bool)
        mask[list(rows)] = False
        mask[list(rows), list(ids)] = True
        return mask


class ForbidTokens:
    """Never these tokens (e.g. chat's turn separator inside a reply)."""

    def __init__(self, vocab: int, ids: Sequence[int]):
        self.allowed = torch.ones(vocab, dtype=torch.bool)
        self.allowed[list(ids)] = False

    def begin(self, rows: torch.Tensor) -> torch.Tensor:
        self.n = len(rows)
        return self.allowed.expand(self.n, -1)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.allowed.expand(self.n, -1)

    def reorder(self, index: torch.Tensor) -> None:
        self.n = len(index)


class MinLength:
    """No <eos> before `n` tokens (an empty reply is no reply)."""

    def __init__(self, vocab: int, eos: int, n: int = 1):
        self.allowed = torch.ones(vocab, dtype=torch.bool)
        self.allowed[eos] = False
        self.n = n

    def begin(self, rows: torch.Tensor) -> Optional[torch.Tensor]:
        self.rows, self.pos = len(rows), 0
        return self._mask()

    def step(self, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        self.pos += 1
        return self._mask()

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = len(index)

    def _mask(self) -> Optional[torch.Tensor]:
        return self.allowed.expand(self.rows, -1) if self.pos < self.n else None


class AllOf:
    """Several hard rules as one, in priority order: a token must pass all of them; where a
    later rule would leave a row nothing, that row keeps what the earlier ones allow (so a
    user's forced opening outranks a task rule that cannot accept it)."""

    def __init__(self, rules: Sequence):
        self.rules = [r for r in rules if r is not None]

    def begin(self, rows: torch.Tensor) -> Optional[torch.Tensor]:
        return self._combine([r.begin(rows) for r in self.rules])

    def step(self, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        return self._combine([r.step(tokens) for r in self.rules])

    def reorder(self, index: torch.Tensor) -> None:
        for r in self.rules:
            r.reorder(index)

    def bias(self):
        """The rules' biases together, (rows, ids, nats), or None."""
        parts = [b for r in self.rules if hasattr(r, "bias") for b in [r.bias()] if b is not None]
        if not parts:
            return None
        return tuple(torch.cat(x) for x in zip(*parts))

    @staticmethod
    def _combine(masks: list) -> Optional[torch.Tensor]:
        out = None
        for m in masks:
            if m is None:
                continue
            if out is None:
                out = m
                continue
            both = out & m
            out = torch.where(both.any(-1, keepdim=True), both, out)
        return out


class RepetitionPenalty:
    """CTRL's penalty, on the logits: a generated token's logit is divided by p when positive,
    else multiplied by p (on log-probs, all negative, a near-certain repeat would go unpunished)."""

    def __init__(self, penalty: float, pad: int):
        self.p, self.pad = penalty, pad

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if history.size(1) == 0:
            return logits
        seen = torch.zeros(logits.shape, dtype=torch.bool).scatter_(1, history, True)
        seen[:, self.pad] = False
        return torch.where(seen, torch.where(logits > 0, logits / self.p, logits * self.p),
                           logits)


class NoRepeatNGram:
    """No n-gram twice within a sequence: a token that would complete a repeat is removed."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        n = self.n
        if history.size(1) < n - 1:
            return logits
        logits = logits.clone()
        for r, hist in enumerate(history.tolist()):
            prefix = tuple(hist[len(hist) - n + 1:]) if n > 1 else ()
            banned = [hist[j + n - 1] for j in range(len(hist) - n + 1)
                      if tuple(hist[j:j + n - 1]) == prefix]
            if banned:
                logits[r, banned] = float("-inf")
        return logits
