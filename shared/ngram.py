"""Task-free interpolated modified Kneser-Ney n-gram language model over token id sequences.

Chen & Goodman (1998): three discounts D1, D2, D3+ per order from count-of-counts; the highest
order uses raw counts, lower orders use continuation counts (how many distinct tokens precede
the gram), and every order interpolates with the next lower one down to a uniform distribution
over the vocabulary, so every id (including <unk> and ids never seen) gets non-zero mass.

It is the project's count-based baseline: the seq2seq models are compared against its
perplexity, optionally conditioned on the same source ("title + form") through `prefixes`.
Pure Python dicts keyed by tuples; `fit` precomputes per-context totals and back-off weights so
`logprob` is O(order) dictionary look-ups.
"""
from __future__ import annotations

import math
from collections import Counter
from operator import itemgetter
from typing import Iterable, Optional, Sequence


def _padded(seq: Sequence[int], prefix: Sequence[int], pad: int, bos: int, eos: int
            ) -> tuple[list[int], int]:
    """Padded token list and the index of the first scored position (the first sequence token).
    The prefix sits after the bos padding so it conditions the sequence but is never an event."""
    toks = [bos] * pad + list(prefix) + list(seq) + [eos]
    return toks, pad + len(prefix)


class KneserNey:
    def __init__(self, order: int, vocab_size: int):
        if order < 1 or vocab_size < 1:
            raise ValueError("order and vocab_size must be >= 1")
        self.order = order
        self.vocab_size = vocab_size
        # Index k (1..order) holds k-grams; index 0 is unused so orders read naturally.
        self.counts: list[dict[tuple, int]] = [{} for _ in range(order + 1)]
        # context (k-1 tokens) -> (total count T, back-off mass numerator D1*N1 + D2*N2 + D3*N3+)
        self.contexts: list[dict[tuple, tuple[int, float]]] = [{} for _ in range(order + 1)]
        self.discounts: list[tuple[float, float, float, float]] = [(0.0,) * 4] * (order + 1)

    # ------------------------------------------------------------------ fitting
    def fit(self, sequences: Iterable[Sequence[int]], bos: int, eos: int,
            prefixes: Optional[Sequence[Sequence[int]]] = None) -> "KneserNey":
        n, V = self.order, self.vocab_size
        raw: list[Counter] = [Counter() for _ in range(n + 1)]
        history: Counter = Counter()                     # T(h) at the highest order
        for idx, seq in enumerate(sequences):
            toks, start = _padded(seq, prefixes[idx] if prefixes is not None else (), n - 1,
                                  bos, eos)
            if max(toks) >= V or min(toks) < 0:
                raise ValueError(f"token id out of range [0, {V}) in sequence {idx}")
            # Only sequence tokens and eos are events; every event has >= n-1 history tokens
            # thanks to the padding, so every lower-order gram has a left neighbour.
            # zip over shifted slices keeps the counting loop in C.
            for k in range(1, n + 1):
                raw[k].update(zip(*(toks[start - k + 1 + j:] for j in range(k))))
            history.update(zip(*(toks[start - n + 1 + j:-1] for j in range(n - 1))))
        if n == 1:
            history = Counter({(): sum(raw[1].values())})
        # Highest order keeps raw counts. Lower order k counts the distinct tokens seen before
        # the gram (continuation count): a word that only follows one context should not get
        # a big unigram share just because that context is frequent ("San Francisco").
        # Its per-context total is then the number of distinct (k+1)-grams x+h+w.
        self.counts[n], totals = dict(raw[n]), {n: history}
        for k in range(n - 1, 0, -1):
            self.counts[k] = dict(Counter(map(itemgetter(slice(1, None)), raw[k + 1])))
            totals[k] = Counter(map(itemgetter(slice(1, -1)), raw[k + 1]))
        del raw
        # Back-off mass of context h is (D1*N1(h) + D2*N2(h) + D3*N3+(h)) / T(h), N_b(h) being
        # the number of distinct followers with count bucket b; Counter(map(...)) stays in C.
        ctx_of = itemgetter(slice(0, -1))
        for k in range(1, n + 1):
            counts = self.counts[k]
            _, d1, d2, d3 = self.discounts[k] = self._estimate_discounts(counts)
            n_all = Counter(map(ctx_of, counts))
            n1 = Counter(map(ctx_of, [g for g, c in counts.items() if c == 1]))
            n2 = Counter(map(ctx_of, [g for g, c in counts.items() if c == 2]))
            self.contexts[k] = {
                h: (totals[k][h], d3 * m + (d1 - d3) * n1.get(h, 0) + (d2 - d3) * n2.get(h, 0))
                for h, m in n_all.items()}
        return self

    @staticmethod
    def _estimate_discounts(counts: dict[tuple, int]) -> tuple[float, float, float, float]:
        """(0, D1, D2, D3+) from count-of-counts n1..n4 (Chen & Goodman eq. 26). Tiny corpora
        can zero an n_i or push an estimate outside (0, c]: clamping to [0.05, c] keeps every
        probability >= 0 and leaves every seen context some back-off mass, so no id gets 0."""
        coc = Counter(counts.values())
        n1, n2, n3, n4 = (coc.get(i, 0) for i in range(1, 5))
        if n1 == 0 or n2 == 0:
            est = [0.5, 1.0, 1.5]
        else:
            Y = n1 / (n1 + 2 * n2)
            est = [1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2,
                   3 - 4 * Y * n4 / n3 if n3 else 1.5]
        d1, d2, d3 = (min(max(d, 0.05), float(c)) for d, c in zip(est, (1, 2, 3)))
        return (0.0, d1, d2, d3)

    # ------------------------------------------------------------------ scoring
    def logprob(self, context: Sequence[int], token: int) -> float:
        """Natural-log P(token | last order-1 tokens of context). A shorter context uses the
        orders it can fill; the recursion runs bottom-up from the uniform distribution."""
        n = self.order
        hist = tuple(context[max(0, len(context) - (n - 1)):]) if n > 1 else ()
        p = 1.0 / self.vocab_size
        for k in range(1, min(n, len(hist) + 1) + 1):
            h = hist[len(hist) - (k - 1):] if k > 1 else ()
            stats = self.contexts[k].get(h)
            if stats is None:
                continue            # unseen context: all its mass goes to the lower order
            total, backoff = stats
            c = self.counts[k].get(h + (token,), 0)
            p = (max(c - self.discounts[k][min(c, 3)], 0.0) + backoff * p) / total
        return math.log(p)

    def score(self, sequences: Iterable[Sequence[int]], bos: int, eos: int,
              exclude: set[int] = frozenset(),
              prefixes: Optional[Sequence[Sequence[int]]] = None) -> dict:
        """Mean NLL (nats) and perplexity over every sequence token plus its eos, skipping ids
        in `exclude` as events (they still condition later tokens, e.g. punctuation)."""
        n, nll, count = self.order, 0.0, 0
        for idx, seq in enumerate(sequences):
            toks, start = _padded(seq, prefixes[idx] if prefixes is not None else (), n - 1,
                                  bos, eos)
            for i in range(start, len(toks)):
                if toks[i] in exclude:
                    continue
                nll -= self.logprob(toks[max(0, i - n + 1):i], toks[i])
                count += 1
        mean = nll / count if count else float("nan")
        return {"nll": mean, "ppl": math.exp(mean) if count else float("nan"), "tokens": count}


def tune_order(train: Iterable[Sequence[int]], validation: Iterable[Sequence[int]],
               orders: Sequence[int] = (2, 3, 4, 5), *, vocab_size: int, bos: int, eos: int,
               train_prefixes: Optional[Sequence[Sequence[int]]] = None,
               validation_prefixes: Optional[Sequence[Sequence[int]]] = None,
               exclude: set[int] = frozenset()) -> tuple[int, dict[int, float]]:
    """Fit each order on train, return (order with the lowest validation ppl, {order: ppl}).
    Ties go to the smaller order (cheaper, and deterministic)."""
    train, validation = list(train), list(validation)   # iterated once per order
    ppl: dict[int, float] = {}
    for k in orders:
        model = KneserNey(k, vocab_size).fit(train, bos, eos, prefixes=train_prefixes)
        ppl[k] = model.score(validation, bos, eos, exclude=exclude,
                             prefixes=validation_prefixes)["ppl"]
        del model                                         # one model in memory at a time
    best = min(ppl, key=lambda k: (ppl[k], k))
    return best, ppl
