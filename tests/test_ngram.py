import math
import random
from collections import Counter

import pytest

from shared.ngram import KneserNey, tune_order

UNK, BOS, EOS, V = 0, 1, 2, 40
NEVER = V - 1                                    # like <unk>: an id absent from every corpus


def toy_corpus(n=60, seed=0):
    rng = random.Random(seed)
    # Zipf-skewed ids 3..38 so count-of-counts n1..n4 are non-zero at every order.
    ids = list(range(3, NEVER))
    weights = [1 / r for r in range(1, len(ids) + 1)]
    return [rng.choices(ids, weights, k=rng.randint(1, 6)) for _ in range(n)]


def total_prob(model, context):
    return math.fsum(math.exp(model.logprob(context, w)) for w in range(V))


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_distribution_sums_to_one(order):
    corpus = toy_corpus()
    model = KneserNey(order, V).fit(corpus, BOS, EOS)
    seen = [BOS] * (order - 1) + corpus[0][:2]
    contexts = [[], seen, [BOS] * (order - 1), [NEVER, UNK, NEVER, UNK], [3], [4, 3, 3, 4, 5, 6, 7]]
    for ctx in contexts:
        assert abs(total_prob(model, ctx) - 1.0) < 1e-9, (order, ctx)
    for ctx in contexts:                          # ids never seen in training still get mass
        assert math.exp(model.logprob(ctx, UNK)) > 0 and math.exp(model.logprob(ctx, NEVER)) > 0


def test_prefers_seen_continuation():
    corpus = [[3, 4, 5]] * 5 + [[3, 6]]
    model = KneserNey(3, V).fit(corpus, BOS, EOS)
    assert model.logprob([3, 4], 5) > math.log(0.5)
    assert model.logprob([3, 4], 5) > model.logprob([3, 4], 6) > model.logprob([3, 4], UNK)
    assert model.logprob([BOS, BOS], 3) > model.logprob([BOS, BOS], 4)
    assert model.logprob([4, 5], EOS) > model.logprob([4, 5], 3)
    # Too few count-of-counts for the estimates: the clamped fallback discounts still normalise.
    for ctx in ([], [3], [3, 4], [BOS, BOS], [UNK, NEVER]):
        assert abs(total_prob(model, ctx) - 1.0) < 1e-9


def test_order1_is_smoothed_unigram():
    corpus = toy_corpus()
    model = KneserNey(1, V).fit(corpus, BOS, EOS)
    c = Counter(t for s in corpus for t in s + [EOS])
    coc = Counter(c.values())
    Y = coc[1] / (coc[1] + 2 * coc[2])
    D = {1: 1 - 2 * Y * coc[2] / coc[1], 2: 2 - 3 * Y * coc[3] / coc[2],
         3: 3 - 4 * Y * coc[4] / coc[3]}
    assert all(0 < D[k] < k for k in D)           # the toy corpus exercises real estimates
    T = sum(c.values())
    gamma = sum(D[min(x, 3)] for x in c.values()) / T
    for w in range(V):
        expected = max(c[w] - D[min(c[w], 3)], 0) / T + gamma / V if c[w] else gamma / V
        assert model.logprob([], w) == pytest.approx(math.log(expected), abs=1e-12)
        assert model.logprob([3, 4, 5], w) == model.logprob([], w)   # context is ignored


def reference_model(corpus, n):
    """Direct, slow transcription of interpolated modified KN; returns prob(hist, w)."""
    grams = [Counter() for _ in range(n + 1)]
    for s in corpus:
        toks = [BOS] * (n - 1) + s + [EOS]
        for i in range(n - 1, len(toks)):
            for k in range(1, n + 1):
                grams[k][tuple(toks[i - k + 1:i + 1])] += 1
    counts = {n: dict(grams[n])}
    for k in range(n - 1, 0, -1):
        counts[k] = {g: len({x for x in grams[k + 1] if x[1:] == g}) for g in grams[k]}

    def disc(k):
        coc = Counter(counts[k].values())
        Y = coc[1] / (coc[1] + 2 * coc[2])
        return [0, 1 - 2 * Y * coc[2] / coc[1], 2 - 3 * Y * coc[3] / coc[2],
                3 - 4 * Y * coc[4] / coc[3]]

    def p(k, h, w):
        if k == 0:
            return 1 / V
        lower = p(k - 1, h[1:], w)
        follow = {g[-1]: c for g, c in counts[k].items() if g[:-1] == h}
        if not follow:
            return lower
        D, T = disc(k), sum(follow.values())
        cw = follow.get(w, 0)
        gamma = sum(D[min(x, 3)] for x in follow.values()) / T
        return max(cw - D[min(cw, 3)], 0) / T + gamma * lower

    return lambda hist, w: p(n, tuple(hist), w)


def test_matches_reference_trigram():
    corpus = toy_corpus(n=120, seed=3)
    model, ref = KneserNey(3, V).fit(corpus, BOS, EOS), reference_model(corpus, 3)
    for hist in [(BOS, BOS), (BOS, 3), (3, 3), (4, 3), (10, NEVER), (UNK, 5), (20, 3)]:
        for w in range(V):
            assert model.logprob(list(hist), w) == pytest.approx(
                math.log(ref(hist, w)), abs=1e-12)


def test_score_and_exclude():
    corpus = toy_corpus()
    model = KneserNey(3, V).fit(corpus, BOS, EOS)
    test = [[3, 9, 4, 9, 5], [9, 6]]
    full = model.score(test, BOS, EOS)
    assert full["tokens"] == sum(len(s) + 1 for s in test)
    assert full["ppl"] == pytest.approx(math.exp(full["nll"]))
    ex = model.score(test, BOS, EOS, exclude={9})
    assert ex["tokens"] == full["tokens"] - 3
    # Excluded ids are not scored but still condition what follows them.
    lps = [model.logprob(([BOS, BOS] + s + [EOS])[i - 2:i], ([BOS, BOS] + s + [EOS])[i])
           for s in test for i in range(2, len(s) + 3) if (s + [EOS])[i - 2] != 9]
    assert ex["nll"] == pytest.approx(-sum(lps) / len(lps), abs=1e-12)
    assert model.logprob([BOS, 9], 4) != model.logprob([BOS, BOS], 4)


def test_prefix_conditions_but_is_not_scored():
    seqs = [[3, 4], [5, 6]] * 10
    prefixes = [[7], [8]] * 10
    model = KneserNey(2, V).fit(seqs, BOS, EOS, prefixes=prefixes)
    assert model.logprob([BOS, 7], 3) > model.logprob([BOS, 7], 5)
    assert model.logprob([BOS, 8], 5) > model.logprob([BOS, 8], 3)
    good = model.score([[3, 4]], BOS, EOS, prefixes=[[7]])
    bad = model.score([[3, 4]], BOS, EOS, prefixes=[[8]])
    assert good["tokens"] == bad["tokens"] == 3 and good["ppl"] < bad["ppl"]
    # Prefix ids are never events: 7 and 8 get only back-off mass as unigrams.
    assert model.counts[1].get((7,)) is None and model.counts[1].get((8,)) is None


def test_tune_order_and_determinism():
    train, val = toy_corpus(200, seed=1), toy_corpus(40, seed=2)
    best, ppl = tune_order(train, val, orders=(2, 3, 4), vocab_size=V, bos=BOS, eos=EOS)
    assert best in (2, 3, 4) and set(ppl) == {2, 3, 4}
    assert ppl[best] == min(ppl.values()) and all(1 < x < V for x in ppl.values())
    assert tune_order(iter(train), iter(val), orders=(2, 3, 4), vocab_size=V, bos=BOS,
                      eos=EOS) == (best, ppl)
    a, b = KneserNey(4, V).fit(train, BOS, EOS), KneserNey(4, V).fit(train, BOS, EOS)
    assert a.score(val, BOS, EOS) == b.score(val, BOS, EOS)


def test_rejects_out_of_range_ids():
    with pytest.raises(ValueError):
        KneserNey(2, V).fit([[3, V]], BOS, EOS)
