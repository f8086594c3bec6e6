"""Planning (Wang et al. 2016): a poem is written from a few keywords, one for a line.

For training, each poem's keywords are extracted from the poem itself: a line's keyword is the
candidate word (a bigram of content characters where the line's rhythm starts a word, found in
at least MIN_DF training poems) whose two characters go together most strongly (PMI of the
pair over the corpus lines), so words (飘零, 尽日), not fragments across words (零尽). At
generation the theme is expanded into keywords by local mutual information (count x PMI)
between "t in the title" (a character or 2-character title word) and "word w in the poem" over
the training poems, which favours the frequent associates of a theme (边塞: 沙场, 将军, 大漠)
over its rare ones. Each candidate samples its own keywords, so candidates differ; a user may
give keywords directly.

    planner = Planner.load("data/models/poem/keywords.json")
    planner.expand("秋夜", random.Random(1))     # e.g. ['蟋蟀', '砧杵']
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .format import prepared

MIN_DF = 20            # a keyword word occurs in at least this many training poems
NEAR_DF = 50           # ... and an expansion word in at least this many
MIN_TITLES = 30        # a title character (or 2-character title word) is expanded when at
                       # least this many titles have it
MIN_PAIR = 10          # a (title key, word) pair counts when seen in this many poems
TOP = 40               # words kept per title key
POOL = 16              # expansion samples among a theme's 16 best words
PLANNED = 4            # keywords a theme is expanded into: over 600 poems / 30 themes (3
                       # candidates, theme weight 2, before the keyword bias) the theme
                       # classifier's top-3 rate was 0.648 with 4 and 0.595 with 2-3 drawn, for
                       # the same mean log-prob
# Frequent function characters make poor keywords (shared with the theme sampler of data.py).
FUNCTION = set("之乎者也矣焉哉而以于於其不无有亦是为与则所乃且兮此彼何谁自已未莫一")
# Where a two-character word may start in a line: the 2+3 rhythm of a 5-character line
# (2+2+1 or 2+1+2) and the 2+2+3 of a 7-character line, so 飘零尽日 gives 飘零 and 尽日
# but never 零尽.
STARTS = {5: (0, 2, 3), 7: (0, 2, 4, 5)}


def bigrams(line: str) -> list[str]:
    """The line's candidate words: content-character bigrams at the rhythm's word starts."""
    starts = STARTS.get(len(line), range(len(line) - 1))
    return [line[i:i + 2] for i in starts if i + 2 <= len(line)
            and line[i] not in FUNCTION and line[i + 1] not in FUNCTION]


def title_keys(title: str) -> set[str]:
    """The title's characters and its 2-character substrings (怀古 as well as 怀 and 古)."""
    return set(title) | {title[i:i + 2] for i in range(len(title) - 1)}


class Planner:
    def __init__(self, df: dict[str, float], poems: int, near: dict[str, list]):
        """df: the keyword vocabulary -> how strongly its two characters go together (PMI
        over the training lines); near: title key -> [(word, weight in (0, 1]), ...], best
        first."""
        self.df, self.poems, self.near = df, poems, near

    @classmethod
    def from_poems(cls, poems: Iterable[dict], min_df: int = MIN_DF, near_df: int = NEAR_DF,
                   min_titles: int = MIN_TITLES, min_pair: int = MIN_PAIR) -> "Planner":
        rows = [(title_keys(p.get("title", "")), p["lines"]) for p in poems]
        df = Counter(w for _, lines in rows for w in {w for x in lines for w in bigrams(x)})
        chars = Counter(c for _, lines in rows for x in lines for c in x)
        grams = Counter(w for _, lines in rows for x in lines for w in bigrams(x))
        n_chars, n_grams = sum(chars.values()), max(1, sum(grams.values()))
        vocab = {w: round(math.log(grams[w] * n_chars * n_chars
                                   / (n_grams * chars[w[0]] * chars[w[1]])), 3)
                 for w, n in df.items() if n >= min_df}
        by_title, pair = Counter(), Counter()
        for keys, lines in rows:
            words = {w for x in lines for w in bigrams(x) if df[w] >= near_df and w in vocab}
            by_title.update(keys)
            pair.update((t, w) for t in keys for w in words)
        n = len(rows)
        near: dict[str, list] = {}
        for (t, w), k in pair.items():
            if k >= min_pair and by_title[t] >= min_titles:
                pmi = math.log(k * n / (by_title[t] * df[w]))
                if pmi > 0:                      # local mutual information: count x PMI
                    near.setdefault(t, []).append((w, k * pmi))
        for t, v in near.items():
            v.sort(key=lambda x: (-x[1], x[0]))
            top = v[0][1]
            near[t] = [(w, round(x / top, 4)) for w, x in v[:TOP]]
        return cls(dict(sorted(vocab.items())), n, dict(sorted(near.items())))

    # -- training: keywords of a real poem --------------------------------------------------
    def line_keyword(self, line: str) -> str | None:
        """The line's word whose characters go together most strongly, or None."""
        cands = [w for w in bigrams(line) if w in self.df]
        return max(cands, key=lambda w: (self.df[w], w)) if cands else None

    def extract(self, lines: Sequence[str]) -> list[str]:
        """One keyword per line where the line has one (None otherwise), in line order."""
        return [self.line_keyword(x) for x in lines]

    # -- generation: keywords for a theme ---------------------------------------------------
    def candidates(self, theme: str) -> list[tuple[str, float]]:
        """Words for the theme, best first: the sum of their weights under the theme's
        characters, twice that under its 2-character title words (送别, 怀古)."""
        score: dict[str, float] = {}
        for key in title_keys(theme):
            for w, x in self.near.get(key, ()):
                score[w] = score.get(w, 0.0) + x * len(key)
        return sorted(score.items(), key=lambda x: (-x[1], x[0]))

    def expand(self, theme: str, rng: random.Random, k: int | None = None) -> list[str]:
        """k (default PLANNED: one for each line of a 绝句) keywords sampled among the
        theme's POOL best words, with probability proportional to their score, no two sharing
        a character; [] when no theme character is known."""
        pool = self.candidates(theme)[:POOL]
        k = min(len(pool), PLANNED if k is None else k)
        out: list[str] = []
        while len(out) < k:
            left = [(w, x) for w, x in pool if not set(w) & set("".join(out))]
            if not left:
                break
            out.append(rng.choices([w for w, _ in left], [x for _, x in left])[0])
        return out

    # -- files ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"poems": self.poems, "df": self.df, "near": self.near},
                          ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> "Planner":
        path = prepared(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["df"], data["poems"], {t: [tuple(x) for x in v]
                                               for t, v in data["near"].items()})
