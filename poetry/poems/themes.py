"""Theme relevance: does a poem read as being about its theme?

A character-level multinomial naive Bayes classifier over 30 common themes, trained on real
training poems whose titles name a theme (title keywords below; a title may name several).
A poem is relevant when its own theme is among the classifier's top 3 (uniform prior: a
frequent theme such as 送别 would otherwise take a top-3 place from every poem).
Used by `python -m poetry.evaluate poem` for generated poems and, as the reference, for the
held-out real test poems.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .format import prepared

THEMES: dict[str, tuple[str, ...]] = {
    "春": ("春",), "夏": ("夏",), "秋": ("秋",), "冬": ("冬",), "月": ("月",), "雪": ("雪",),
    "雨": ("雨",), "风": ("风",), "花": ("花",), "柳": ("柳",), "梅": ("梅",), "菊": ("菊",),
    "竹": ("竹",), "山": ("山",), "江": ("江",), "湖": ("湖",), "夜": ("夜",),
    "晚": ("晚", "暮"), "酒": ("酒", "饮", "醉"), "僧": ("僧", "上人", "禅", "寺"),
    "送别": ("送", "别"), "思乡": ("思乡", "思归", "乡思", "怀乡", "故乡", "归思", "故园"),
    "边塞": ("塞", "边", "征", "戍", "从军"), "怀古": ("怀古", "古意", "览古", "古迹"),
    "闺怨": ("闺", "宫怨", "怨"), "登高": ("登",), "田园": ("田", "村", "农"),
    "寄友": ("寄", "赠"), "游": ("游",), "宴": ("宴",)}


def labels(title: str) -> list[str]:
    """The themes a title names."""
    return [t for t, keys in THEMES.items() if any(k in title for k in keys)]


class ThemeClassifier:
    def __init__(self, poems: Iterable[dict], alpha: float = 0.5):
        """poems: dicts with "title" and "body" (real training poems)."""
        counts = {t: Counter() for t in THEMES}
        for p in poems:
            chars = [c for c in p["body"] if c not in "，。"]
            for t in labels(p.get("title", "")):
                counts[t].update(chars)
        vocab = set().union(*counts.values())
        self.n_poems_vocab = len(vocab)
        self.logp: dict[str, dict[str, float]] = {}
        self.unseen: dict[str, float] = {}
        for t, c in counts.items():
            total = sum(c.values()) + alpha * (len(vocab) + 1)
            self.logp[t] = {ch: math.log((n + alpha) / total) for ch, n in c.items()}
            self.unseen[t] = math.log(alpha / total)

    def rank(self, text: str) -> list[str]:
        """Themes by likelihood of the poem's characters, best first."""
        chars = [c for c in text if c not in "，。"]
        score = {t: sum(lp.get(c, self.unseen[t]) for c in chars) for t, lp in self.logp.items()}
        return sorted(score, key=lambda t: -score[t])

    def hit_rate(self, items: Sequence[tuple[str, Sequence[str]]], k: int = 3) -> float:
        """items: (text, its themes) -> share whose themes meet the top k."""
        hits = [bool(set(self.rank(text)[:k]) & set(ts)) for text, ts in items]
        return round(sum(hits) / len(hits), 4) if hits else 0.0


class Associations:
    """Characters a theme character brings with it: for each title character t of real poems,
    the body characters c with the highest pointwise mutual information between "t in the
    title" and "c in the poem" (poem counts), for re-ranking candidates by relevance."""

    def __init__(self, table: dict[str, str]):
        self.table = table

    @classmethod
    def from_poems(cls, poems: Iterable[dict], top: int = 24, min_titles: int = 30,
                   min_pair: int = 8) -> "Associations":
        n, by_title, by_body, pair = 0, Counter(), Counter(), Counter()
        for p in poems:
            n += 1
            title = set(p.get("title", ""))
            chars = set(p["body"]) - set("，。")
            by_title.update(title)
            by_body.update(chars)
            pair.update((t, c) for t in title for c in chars)
        best: dict[str, list[tuple[float, str]]] = {}
        for (t, c), k in pair.items():
            if k >= min_pair and by_title[t] >= min_titles:
                pmi = math.log(k * n / (by_title[t] * by_body[c]))
                if pmi > 0:
                    best.setdefault(t, []).append((pmi, c))
        return cls({t: "".join(c for _, c in sorted(v, reverse=True)[:top])
                    for t, v in sorted(best.items())})

    def relevance(self, theme: str, text: str) -> float:
        """Share of the poem's characters that are theme characters or associated with one."""
        near = set(theme).union(*(self.table.get(t, "") for t in theme))
        chars = [c for c in text if c not in "，。"]
        return sum(c in near for c in chars) / len(chars) if chars else 0.0

    def to_json(self) -> str:
        return json.dumps(self.table, ensure_ascii=False, indent=0) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> "Associations":
        path = prepared(path)
        return cls(json.loads(path.read_text(encoding="utf-8")))
