"""Repetition inside one poem: what real poems do (rates), and the limits the rules take from them.

Three habits of an untrained eye that real 绝句/律诗 avoid:
* one character many times in a poem (秋 five times in 20 characters);
* a rhyme character twice (重韵): the rhyming line ends must be distinct;
* doubled characters (叠字 XX, 悠悠, 萧萧): real poems double only some characters, rarely;
* a character twice in one line other than as XX (雨急霏霏雨): 2.0 % of real lines, 10.5 % of
  real poems have one; an unconstrained model writes far more;
* a two-character sequence twice in a poem (春来芳菲春，柳色芳菲深): 3.0 % of real poems, far
  more of an unconstrained model's.
With limits on (`PoemConstraint` given `Limits`), the last two are never allowed: real poems do
them in 2 % of lines and 3 % of poems, so a measured cap would allow nothing either.

`Limits.from_poems` measures the limits on the training poems: per form, the character count
(and number of XX pairs) that real poems exceed in at most `rate` of poems, the characters
whose doubling real poems attest, and where in a line real pairs start. The rates are 4-5 %,
not 1-2 %: the model fills any allowance it is given (with a cap of 3 in 七律, 80 % of its 七律
had a character 3 times, against 3.9 % of real ones), so the cap is what 96 % of real poems
keep to. `prepare` writes them to repetition.json; the model folder
ships a copy that `PoemWriter` loads for `PoemConstraint`.
"""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .format import prepared
from .verse import FORMS, form_of, level_rhyme_groups, rhyme_positions, shared_rhyme

RATE = 0.04           # a limit is what at most 4 % of real poems exceed (see Limits.from_poems)
DOUBLE_RATE = 0.05    # the same for doubled pairs per poem
MIN_POEMS = 5         # a doubled character is attested when this many poems double it
MIN_PLACE = 0.05      # a doubled pair may start where >= 5 % of real pairs of that line length
                      # start (word-aligned: 5 chars 0, 2, 3; 7 chars 0, 2, 4, 5)


def doubles(lines: Sequence[str]) -> list[str]:
    """The characters doubled inside a line (XX), one entry per pair."""
    return [x[i] for x in lines for i in range(len(x) - 1) if x[i] == x[i + 1]]


def rhyme_ends(lines: Sequence[str]) -> list[str]:
    """The rhyme characters: even-line ends, and line 1's end when it rhymes with them."""
    ends = [lines[i][-1] for i in rhyme_positions(len(lines)) if lines[i]]
    if lines and lines[0] and level_rhyme_groups(lines[0][-1]) & shared_rhyme(lines):
        ends.insert(0, lines[0][-1])
    return ends


def repeats_rhyme(lines: Sequence[str]) -> bool:
    ends = rhyme_ends(lines)
    return len(set(ends)) < len(ends)


def repeats_in_line(line: str) -> bool:
    """A character twice in the line, other than as a doubled pair XX."""
    return any(line[j] == line[i] for i in range(len(line)) for j in range(i + 2, len(line)))


def repeats_pair(lines: Sequence[str]) -> bool:
    """A two-character sequence twice in the poem (lines are read one by one)."""
    pairs = [x[i:i + 2] for x in lines for i in range(len(x) - 1)]
    return len(set(pairs)) < len(pairs)


def max_count(lines: Sequence[str]) -> int:
    return max(collections.Counter("".join(lines)).values(), default=0)


def rates(poems: Iterable[Sequence[str]]) -> dict:
    """Share of poems with a character 3+ times, share with a repeated rhyme character,
    doubled pairs per poem, share of poems with a character twice in a line (not XX), share
    with a two-character sequence twice."""
    poems = [list(p) for p in poems]
    n = max(len(poems), 1)
    return {"poems": len(poems),
            "char_3plus": round(sum(max_count(p) >= 3 for p in poems) / n, 4),
            "repeated_rhyme": round(sum(repeats_rhyme(p) for p in poems) / n, 4),
            "doubles_per_poem": round(sum(len(doubles(p)) for p in poems) / n, 4),
            "char_twice_in_a_line": round(sum(any(map(repeats_in_line, p)) for p in poems) / n,
                                          4),
            "pair_twice": round(sum(repeats_pair(p) for p in poems) / n, 4)}


def _limit(values: list[int], rate: float) -> int:
    """The smallest k that at most `rate` of the values exceed."""
    counts = collections.Counter(values)
    k, over = 0, len(values) - counts.get(0, 0)         # values > 0
    while over > rate * len(values):
        k += 1
        over -= counts.get(k, 0)         # values > k = values > k-1 minus those == k
    return k


@dataclass(frozen=True)
class Limits:
    cap: dict[str, int]            # form -> the most times one character may appear
    max_doubles: dict[str, int]    # form -> the most doubled pairs (XX) in one poem
    doubled: frozenset[str]        # characters real poems double (悠 of 悠悠)
    places: dict[int, frozenset[int]]    # line length -> where in a line a pair may start

    @classmethod
    def from_poems(cls, poems: Iterable[Sequence[str]], rate: float = RATE,
                   double_rate: float = DOUBLE_RATE, min_poems: int = MIN_POEMS) -> "Limits":
        by_form: dict[str, list[list[str]]] = {f: [] for f in FORMS}
        attested: collections.Counter = collections.Counter()
        starts: dict[int, collections.Counter] = {}
        for lines in poems:
            f = form_of(lines)
            if f is not None:
                by_form[f.name].append(list(lines))
                attested.update(set(doubles(lines)))
                starts.setdefault(f.length, collections.Counter()).update(
                    i for x in lines for i in range(len(x) - 1) if x[i] == x[i + 1])
        cap = {f: _limit([max_count(p) for p in ps], rate) for f, ps in by_form.items() if ps}
        dbl = {f: _limit([len(doubles(p)) for p in ps], double_rate)
               for f, ps in by_form.items() if ps}
        places = {n: frozenset(i for i, k in c.items() if k >= MIN_PLACE * sum(c.values()))
                  for n, c in starts.items()}
        return cls(cap, dbl, frozenset(c for c, n in attested.items() if n >= min_poems),
                   places)

    def to_json(self) -> str:
        return json.dumps({"rate": RATE, "double_rate": DOUBLE_RATE, "min_poems": MIN_POEMS,
                           "cap": self.cap, "max_doubles": self.max_doubles,
                           "doubled": "".join(sorted(self.doubled)),
                           "places": {str(n): sorted(p) for n, p in sorted(self.places.items())}},
                          ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> "Limits":
        path = prepared(path)
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls({k: int(v) for k, v in d["cap"].items()},
                   {k: int(v) for k, v in d["max_doubles"].items()}, frozenset(d["doubled"]),
                   {int(n): frozenset(p) for n, p in d["places"].items()})
