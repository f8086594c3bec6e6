"""Poem rules as a `shared.decoding.Constraint` over a character vocabulary.

The target side is: line characters, '，' after odd lines, '。' after even lines, then <eos>.
Per item (`PoemSpec`): the form, acrostic heads, forced opening lines (`start`), rhyme (on by
default, by the rhyme book `book`: 平水韵 unless 新韵 is asked for) and strict 平仄 tones
(optional; classical tones under 平水韵, modern ones under 新韵). Across items: novelty — no generated line equals a
corpus line, and no line repeats within a poem; repetition — no rhyme character twice (重韵),
and with `Limits` (measured on real poems, poetry/poems/repetition.py) no character more often
than real poems of the form allow, doubled characters (XX) only where real poems double them,
no character twice in a line but as XX, and no two-character sequence twice in a poem.

Masks are built from per-vocabulary boolean tensors (CJK characters, level / oblique, one row
per rhyme group) cached by a small key, so a step costs a dict lookup per row plus one stack.
A row never dead-ends: if the rules leave no character, they are relaxed in this order —
strict tones first (an option), then the character cap and 叠字 (style), then 重韵, then rhyme
(form), then novelty (copying a famous line is the worst failure) — and the line length,
punctuation and <eos> are never relaxed. Each row records where a rule gave way, by the rules
its character then broke (`RULES` names them); `relaxations` replays a written poem through
the rules to read that record, for the note a user gets.
User-forced characters (start lines, acrostic heads) always win; a forced character that fits
no remaining 平仄 pattern is treated as free rather than emptying the pattern set.
"""
from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import torch

from shared.cli import check_text
from shared.rules import AllOf, ForcePrefix

from .novelty import LineIndex
from .planning import STARTS
from .repetition import Limits
from .verse import (DEFAULT_BOOK, check_book, get_form, group_names, is_cjk, is_level,
                    is_oblique, level_rhyme_groups, patterns, primary_is_level)

COMMA, STOP = "，", "。"


@dataclass(frozen=True)
class PoemSpec:
    form: str
    acrostic: Optional[str] = None
    start: tuple[str, ...] = ()
    rhyme: bool = True
    tones: Optional[str] = None         # None or "strict"
    book: str = DEFAULT_BOOK            # the rhyme book and its tones: pingshui or xinyun


def parse_start(start: str | Sequence[str] | None) -> tuple[str, ...]:
    """'床前明月光，疑是地上霜' or a list of lines -> the lines, punctuation and spaces dropped."""
    if not start:
        return ()
    if not isinstance(start, str) and not (isinstance(start, (list, tuple))
                                           and all(isinstance(s, str) for s in start)):
        raise ValueError(f"start must be text or a list of lines, got {type(start).__name__}")
    for s in [start] if isinstance(start, str) else start:
        check_text(s, "start")
    parts = re.split(r"[，。,.;；？！?!：:、/|\s]+", start) if isinstance(start, str) else [
        re.sub(r"[，。,.;；？！?!：:、\s]", "", s) for s in start]
    return tuple(p for p in parts if p)


def make_spec(form: str, acrostic: Optional[str] = None, start=None,
              rhyme: bool | str = True, tones: Optional[str] = None,
              tokenizer=None) -> PoemSpec:
    """Validated spec; raises ValueError with a one-line message for input that cannot be
    repaired. With a tokenizer, characters it does not know are rejected too. `rhyme`: True
    (平水韵), a rhyme book ("pingshui" 平水韵, "xinyun" 中华新韵) or False."""
    f = get_form(form)
    if isinstance(rhyme, str):
        book, rhyme = check_book(rhyme), True
    elif isinstance(rhyme, bool):
        book = DEFAULT_BOOK
    else:
        raise ValueError(f"rhyme must be true, false, pingshui or xinyun, got {rhyme!r}")
    if tones in ("off", "none", ""):
        tones = None
    if tones not in (None, "strict"):
        raise ValueError(f"tones must be 'strict' or off, got {tones!r}")
    known = (lambda c: c in tokenizer.stoi) if tokenizer is not None else (lambda c: True)

    def check_chars(what: str, text: str) -> None:
        bad = "".join(dict.fromkeys(c for c in text if not is_cjk(c)))
        if bad == "".join(dict.fromkeys(text)):
            raise ValueError(f"{what} {text!r} is not Chinese")
        if bad:
            raise ValueError(f"{what} {text!r} has non-Chinese characters {bad!r}")
        unknown = "".join(dict.fromkeys(c for c in text if not known(c)))
        if unknown:
            raise ValueError(f"{what} {text!r} has characters the model does not know: {unknown}")

    check_text(acrostic, "acrostic", optional=True)
    if acrostic is not None:
        acrostic = re.sub(r"[\s，。,.、]", "", acrostic) or None
    if acrostic is not None:
        check_chars("acrostic", acrostic)
        if len(acrostic) != f.lines:
            raise ValueError(f"acrostic {acrostic!r} has {len(acrostic)} characters; "
                             f"a {f.zh} ({f.name}) has {f.lines} lines")
    lines = parse_start(start)
    if len(lines) > f.lines:
        raise ValueError(f"start has {len(lines)} lines; a {f.zh} ({f.name}) has {f.lines}")
    for i, line in enumerate(lines):
        check_chars(f"start line {i + 1}", line)      # "hello" is not Chinese, whatever its length
        if len(line) != f.length:
            raise ValueError(f"start line {i + 1} {line!r} has {len(line)} characters; "
                             f"{f.zh} ({f.name}) lines have {f.length}")
        if acrostic is not None and line[0] != acrostic[i]:
            raise ValueError(f"start line {i + 1} {line!r} does not begin with acrostic "
                             f"head {acrostic[i]!r}")
    return PoemSpec(f.name, acrostic, lines, rhyme, tones, book)


# The rules the ladder relaxes, in its order (`PoemConstraint._mask`): the name a poem's
# record gives each, and the words a note to the user names it by
RULES = {"tones": "strict 平仄 tones", "repetition": "the repetition limits (no character too "
         "often, 叠字 only as real poems double)", "repeated rhyme": "no rhyme character twice "
         "(重韵)", "rhyme": "the rhyme (押韵)", "novelty": "no line copied from a real poem or "
         "repeated"}
LADDER = tuple(RULES)


def relaxations(tokenizer, spec: PoemSpec, poem: str, corpus: Optional[LineIndex] = None,
                limits: Optional[Limits] = None) -> list[tuple[str, int]]:
    """Where the verse rules gave way in `poem` (its text as written, with its ，。): the
    (rule, line) pairs of PoemConstraint's record, replayed over its characters with the same
    spec, corpus and limits as it was written with (the rules follow the text alone, so the
    record is the one made while writing it); [] where every rule held."""
    c = PoemConstraint(tokenizer, [spec], corpus, None, limits)
    c.begin(torch.zeros(1, dtype=torch.long))
    for tok in tokenizer.encode(poem) + [tokenizer.eos_id]:
        c.step(torch.tensor([tok]))
    return c.record(0)


WIDE_GROUP = 8    # a rhyme is chosen in a group with at least this many characters in the
                  # vocabulary where there is one: a 律诗 needs five distinct rhyme characters,
                  # and a narrow group (险韵) dead-ends under strict tones and the repetition
                  # caps. Tang poems use the six narrowest 平水韵 groups (咸 肴 盐 江 佳 覃) in
                  # 1 % of poems, and each has >= 30 characters in the shipped model's
                  # vocabulary, so only small vocabularies are narrowed.


class _Tables:
    """Per-vocabulary facts of one rhyme book as tensors and lists, built once per pair."""

    def __init__(self, itos: tuple[str, ...], book: str):
        V = self.V = len(itos)
        self.cjk_l = [is_cjk(t) for t in itos]
        self.cjk = torch.tensor(self.cjk_l)
        self.level_l = [c and is_level(t, book) for t, c in zip(itos, self.cjk_l)]
        self.oblique_l = [c and is_oblique(t, book) for t, c in zip(itos, self.cjk_l)]
        self.level, self.oblique = torch.tensor(self.level_l), torch.tensor(self.oblique_l)
        groups = [level_rhyme_groups(t, book) if c else frozenset() for t, c in
                  zip(itos, self.cjk_l)]
        size = Counter(g for gs in groups for g in gs)
        wide = {g for g, n in size.items() if n >= WIDE_GROUP}
        # a character rhymes in its wide groups where it has one (才 is in 灰 and narrow 咸);
        # one in narrow groups only does not end the first line, where it would set the rhyme
        self.groups = [gs & wide or gs for gs in groups]
        self.first_end = torch.tensor([not (gs and wide and not gs & wide) for gs in groups])
        self.primary_level = [c and primary_is_level(t, book) for t, c in
                              zip(itos, self.cjk_l)]
        self.names = group_names(book)
        self.rhyme = torch.zeros(len(self.names), V, dtype=torch.bool)
        for i, gs in enumerate(self.groups):
            for g in gs:
                self.rhyme[self.names.index(g), i] = True
        rows = [self.names.index(g) for g in sorted(wide)]
        self.any_rhyme = self.rhyme[rows].any(0) if rows else self.rhyme.any(0)
        self.everything = torch.ones(V, dtype=torch.bool)
        self.cache: dict = {}

    def onehot(self, tok: int) -> torch.Tensor:
        m = self.cache.get(tok)
        if m is None:
            m = self.cache[tok] = torch.zeros(self.V, dtype=torch.bool)
            m[tok] = True
        return m

    def mask(self, tone, rhyme) -> tuple[torch.Tensor, int]:
        """CJK characters fitting a tone key (any ⊙, any 平, any 仄 among candidate patterns;
        None = free) and a rhyme key (None = free, 'any', or a frozenset of groups), with the
        number of allowed tokens (a Python int, so dead-end checks need no tensor op)."""
        key = (tone, rhyme)
        hit = self.cache.get(key)
        if hit is None:
            m = self.cjk.clone()
            if tone is not None and not tone[0]:
                m &= (self.level & tone[1]) | (self.oblique & tone[2])
            if rhyme == "any":
                m &= self.any_rhyme
            elif rhyme == "first":
                m &= self.first_end
            elif rhyme is not None:
                m &= self.rhyme[[self.names.index(g) for g in sorted(rhyme)]].any(0)
            hit = self.cache[key] = (m, int(m.sum()))
        return hit


@lru_cache(maxsize=8)
def _tables(itos: tuple[str, ...], book: str = DEFAULT_BOOK) -> _Tables:
    return _Tables(itos, book)


class _Row:
    """One row's poem so far. Fields are replaced, never mutated, so `reorder` can share them
    between copies."""
    __slots__ = ("item", "pos", "lines", "cur", "groups", "pats", "done", "counts", "prev",
                 "doubles", "rhymed", "loose", "relaxed")

    def __init__(self, item: int, n_patterns: int):
        self.item, self.pos, self.lines, self.cur = item, 0, (), ""
        self.groups: Optional[frozenset] = None     # candidate rhyme groups, None = not fixed
        self.pats = tuple(range(n_patterns))         # 平仄 patterns still compatible
        self.done = False
        self.counts: dict[int, int] = {}             # token -> times in the poem (forced: all)
        self.prev: Optional[int] = None              # the line's previous character
        self.doubles = 0                             # doubled pairs (XX) so far
        self.rhymed: tuple[int, ...] = ()            # rhyme characters used (重韵 check)
        self.loose: Optional[tuple] = None           # the rules relaxed at this position
        self.relaxed: tuple[tuple[str, int], ...] = ()   # (rule, line) where one gave way


def forced_tokens(tokenizer, spec: PoemSpec) -> list[Optional[int]]:
    """What `spec` fixes at each target position (None = free): the user's opening lines and
    acrostic heads, '，' after odd lines, '。' after even lines, <eos> after the last."""
    f = get_form(spec.form)
    comma, stop = tokenizer.stoi[COMMA], tokenizer.stoi[STOP]
    forced: list[Optional[int]] = []
    for i in range(f.lines):
        line = spec.start[i] if i < len(spec.start) else ""
        for j in range(f.length):
            ch = line[j] if line else (spec.acrostic[i] if spec.acrostic and j == 0 else None)
            if ch is not None and ch not in tokenizer.stoi:
                raise ValueError(f"{ch!r} (acrostic or start) is not in the vocabulary")
            forced.append(None if ch is None else tokenizer.stoi[ch])
        forced.append(comma if i % 2 == 0 else stop)
    forced.append(tokenizer.eos_id)
    return forced


def poem_rules(tokenizer, specs: Sequence[PoemSpec], corpus: Optional[LineIndex] = None,
               limits: Optional[Limits] = None,
               keywords: Optional[Sequence[Sequence[str]]] = None):
    """The whole chain for a batch of specs: what the user and the form fix (shared
    `ForcePrefix`), then the verse rules at the free positions (`PoemConstraint`), and, with
    `keywords` (a plan per item), the pull toward the plan (`KeywordBias`)."""
    check_vocabulary(tokenizer)
    forced = [forced_tokens(tokenizer, s) for s in specs]
    return AllOf([ForcePrefix(tokenizer.vocab_size, forced),
                  PoemConstraint(tokenizer, specs, corpus, forced, limits),
                  KeywordBias(tokenizer, specs, keywords) if keywords and any(keywords)
                  else None])


KEYWORD_BIAS = 2.0    # nats: over 600 poems / 30 themes (3 candidates, 4 keywords, theme weight
                      # 5) keywords written 14 / 32 / 57 / 75 % at 0 / 1 / 2 / 3 nats, the theme
                      # classifier's top-3 rate 0.67 / 0.70 / 0.72 / 0.71, mean log-prob per
                      # character -2.60 / -2.58 / -2.60 / -2.65


class KeywordBias:
    """Weighted decoding toward the plan (as Hafez, Ghazvininejad et al. 2016, weighs topical
    words): until a planned keyword is in the poem, its first character gets `weight` nats
    where a word may start in a line, and each next character of it gets them right after the
    characters before it. The attention-free model reads its plan only through the encoder's
    summary and wrote the test poems' own keywords 5 % of the time; the hard rules decide what is
    allowed, and scores stay the model's own."""

    def __init__(self, tokenizer, specs: Sequence[PoemSpec], keywords: Sequence[Sequence[str]],
                 weight: float = KEYWORD_BIAS):
        stoi = tokenizer.stoi
        self.tok, self.weight = tokenizer, weight
        self.lengths = [get_form(s.form).length for s in specs]
        self.words = [[w for w in kws if w and all(c in stoi for c in w)] for kws in keywords]
        self.ids = {w: [stoi[c] for c in w] for kws in self.words for w in kws}

    def begin(self, rows: torch.Tensor) -> None:
        self.rows = [[int(i), 0, "", ""] for i in rows.tolist()]   # item, position, poem, line
        return None

    def step(self, tokens: torch.Tensor) -> None:
        for row, tok in zip(self.rows, tokens.tolist()):
            n = self.lengths[row[0]]
            c = self.tok.itos[tok] if tok < len(self.tok.itos) else ""
            row[1] += 1
            row[3] = "" if row[1] % (n + 1) == 0 else row[3] + (c if len(c) == 1 else "□")
            row[2] += c if len(c) == 1 else "□"
        return None

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = [list(self.rows[i]) for i in index.tolist()]

    def bias(self):
        rows, ids = [], []
        for r, (item, pos, poem, line) in enumerate(self.rows):
            j = pos % (self.lengths[item] + 1)
            if j >= self.lengths[item]:
                continue                                  # the punctuation slot
            for w in self.words[item]:
                if w in poem:
                    continue
                k = next((k for k in range(len(w) - 1, 0, -1) if line.endswith(w[:k])), 0)
                if k or j in STARTS.get(self.lengths[item], (0,)):   # a word may start
                    if j + len(w) - k <= self.lengths[item]:     # the rest fits the line
                        rows.append(r)
                        ids.append(self.ids[w][k])
        if not rows:
            return None
        return (torch.tensor(rows), torch.tensor(ids),
                torch.full((len(rows),), self.weight))


def check_vocabulary(tokenizer) -> None:
    if not any(is_cjk(t) for t in tokenizer.itos):
        raise ValueError("the tokenizer has no Chinese characters")
    for p in (COMMA, STOP):
        if p not in tokenizer.stoi:
            raise ValueError(f"the tokenizer lacks {p!r}, needed between lines")


class PoemConstraint:
    """The verse rules (Constraint protocol: begin / step / reorder) at the positions a spec
    leaves free: CJK characters only, strict tones, rhyme, novelty. Positions fixed by
    `forced_tokens` allow anything here: `ForcePrefix`, before it in `poem_rules`, decides."""

    def __init__(self, tokenizer, specs: Sequence[PoemSpec],
                 corpus: Optional[LineIndex] = None,
                 forced: Optional[Sequence[Sequence[Optional[int]]]] = None,
                 limits: Optional[Limits] = None):
        """specs[i] rules item i; `corpus` lines may not be generated (None = no such check;
        repeated lines within a poem are always blocked); `limits` cap repeated and doubled
        characters (None = no cap; a repeated rhyme character is always blocked)."""
        check_vocabulary(tokenizer)
        self.tok, self.specs, self.index = tokenizer, list(specs), corpus
        self.limits = limits
        itos = tuple(tokenizer.itos)
        self.t = _tables(itos)                          # what no rhyme book changes
        self._t = [_tables(itos, s.book) for s in self.specs]   # each item's book
        self._forms = [get_form(s.form) for s in self.specs]
        self._pats = [patterns(s.form) for s in self.specs]
        self._forced = [list(f) for f in forced] if forced is not None else \
            [forced_tokens(tokenizer, s) for s in self.specs]
        # characters the user forces count from the start, so that free ones leave them room
        # under the cap (an acrostic head 春 in line 8 is reserved before line 1 is written)
        self._reserved = [dict(Counter(t for t in f if t is not None and t < self.t.V
                                       and self.t.cjk_l[t])) for f in self._forced]
        self.rows: list[_Row] = []
        self.relaxed = 0          # how many steps needed a rule relaxed (for evaluation)

    # -- protocol ------------------------------------------------------------------------
    def begin(self, rows: torch.Tensor) -> torch.Tensor:
        self.rows = [_Row(int(i), len(self._pats[int(i)])) for i in rows.tolist()]
        for row in self.rows:
            row.counts = self._reserved[row.item]
        return self._masks()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        for row, tok in zip(self.rows, tokens.tolist()):
            self._consume(row, tok)
        return self._masks()

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = [copy.copy(self.rows[i]) for i in index.tolist()]

    # -- state -----------------------------------------------------------------------------
    def _consume(self, row: _Row, tok: int) -> None:
        if row.loose is not None:
            self._broken(row, tok)
        if row.done:
            return                                     # <pad> after <eos>
        if tok == self.tok.eos_id:
            row.done = True
            return
        f, t = self._forms[row.item], self._t[row.item]
        i, j = divmod(row.pos, f.length + 1)
        row.pos += 1
        if i >= f.lines:                               # anything past the last '。' ends it
            row.done = True
            return
        if j == f.length:                              # the punctuation slot closes the line
            row.lines, row.cur, row.prev = row.lines + (row.cur,), "", None
            return
        s = self.tok.itos[tok]
        row.cur += s if len(s) == 1 else "□"
        if self._forced[row.item][row.pos - 1] is None:      # forced ones are reserved
            row.counts = {**row.counts, tok: row.counts.get(tok, 0) + 1}
        row.doubles += tok == row.prev
        row.prev = tok
        spec = self.specs[row.item]
        if spec.tones == "strict":
            pats = self._pats[row.item]
            keep = tuple(p for p in row.pats if self._fits(t, tok, pats[p][i][j]))
            row.pats = keep or row.pats                # a forced misfit counts as free
        if j == f.length - 1 and spec.rhyme:
            groups = t.groups[tok] if tok < t.V else frozenset()
            if i % 2 == 1:                             # lines 2, 4, 6, 8
                row.rhymed += (tok,)
                if groups:
                    both = groups & row.groups if row.groups else groups
                    row.groups = both or groups        # an even line's own rhyme wins
            elif i == 0 and groups and (t.primary_level[tok] or (
                    spec.tones == "strict"
                    and all(self._pats[row.item][p][0][-1] == "平" for p in row.pats))):
                row.groups = groups                    # a level first line rhymes (首句入韵)
                row.rhymed += (tok,)

    def _broken(self, row: _Row, tok: int) -> None:
        """Which of the rules relaxed at this position the character `tok` breaks: each one
        goes into the row's record with its line (a relaxed rule may still hold by chance)."""
        (pos, line, k, book, tone, rhyme, style, twice, novel), row.loose = row.loose, None
        if pos != row.pos or tok >= book.V or not book.cjk_l[tok]:
            return
        breaks = (tone is not None and not bool(book.mask(tone, None)[0][tok]), tok in style,
                  tok in twice, rhyme not in (None, "first") and
                  not bool(book.mask(None, rhyme)[0][tok]), tok in novel)
        new = tuple((rule, line) for rule, broke in zip(LADDER[:k], breaks) if broke)
        row.relaxed += tuple(x for x in new if x not in row.relaxed)

    def record(self, r: int) -> list[tuple[str, int]]:
        """Row r's record: (rule, line) where a rule gave way, in order, line numbered from 1."""
        return list(self.rows[r].relaxed)

    @staticmethod
    def _fits(t: _Tables, tok: int, mark: str) -> bool:
        if mark == "⊙":
            return True
        if tok >= t.V:
            return False
        return t.level_l[tok] if mark == "平" else t.oblique_l[tok]

    # -- masks -----------------------------------------------------------------------------
    def _masks(self) -> torch.Tensor:
        if not self.rows:
            return torch.zeros(0, self.t.V, dtype=torch.bool)
        base, ban_rows, ban_ids = [], [], []
        for r, row in enumerate(self.rows):
            m, ids = self._mask(row)
            base.append(m)
            ban_rows += [r] * len(ids)
            ban_ids += ids
        out = torch.stack(base)                        # copies: cached masks stay intact
        if ban_ids:
            out[ban_rows, ban_ids] = False
        return out

    def _mask(self, row: _Row) -> tuple[torch.Tensor, list[int]]:
        """A cached base mask and the token ids to remove from it (novelty, repetition)."""
        t, eos = self.t, self.tok.eos_id
        forced = self._forced[row.item]
        if row.done or row.pos >= len(forced):
            return t.onehot(eos), []
        if forced[row.pos] is not None:
            return t.everything, []                    # ForcePrefix decides here
        spec, f = self.specs[row.item], self._forms[row.item]
        i, j = divmod(row.pos, f.length + 1)
        tone = None
        if spec.tones == "strict":
            marks = {self._pats[row.item][p][i][j] for p in row.pats}
            tone = ("⊙" in marks, "平" in marks, "仄" in marks)
        last = j == f.length - 1
        rhyme = None
        if last and spec.rhyme and i % 2 == 1:
            rhyme = row.groups if row.groups else "any"
        elif last and spec.rhyme and i == 0:
            rhyme = "first"
        novel: list[int] = []
        if last:
            stoi = self.tok.stoi
            novel = list({stoi[c] for c in self._banned(row, i) if c in stoi})
        # 重韵: no rhyme character twice, nor the first line's end even where that line was
        # not taken to rhyme (重 zhòng, oblique, ends line 1; as chóng it rhymes with 中)
        twice = []
        if rhyme is not None:
            twice = list(row.rhymed)
            if row.lines and row.lines[0]:
                twice.append(self.tok.stoi.get(row.lines[0][-1], self.tok.unk_id))
        style = self._repetition(row, f, j)
        # Relax in order: tones; the character cap and 叠字; 重韵; rhyme; novelty last
        # (copying a famous line is the worst failure). The CJK-only base never gives way.
        every = list(dict.fromkeys(novel + twice + style))
        ladder = ((tone, rhyme, every), (None, rhyme, every),
                  (None, rhyme, list(dict.fromkeys(novel + twice))), (None, rhyme, novel),
                  (None, None, novel), (None, None, []))
        book = self._t[row.item]
        for k, (tone_k, rhyme_k, ban) in enumerate(ladder):
            m, count = book.mask(tone_k, rhyme_k)
            # more allowed tokens than banned ones: certainly not empty, no tensor op needed
            if count > len(ban) or (count and count > int(m[ban].sum())):
                self.relaxed += k > 0
                if k:                                  # judged on the character chosen here
                    row.loose = (row.pos, i + 1, k, book, tone, rhyme, set(style), set(twice),
                                 set(novel))
                return m, ban
        return t.cjk, []                               # unreachable: the vocab has CJK

    def _repetition(self, row: _Row, f, j: int) -> list[int]:
        """Tokens the repetition limits forbid here: characters at the form's cap, and the
        previous character when doubling it (XX) is unattested, off the places real pairs
        start, or beyond the poem's share."""
        lim = self.limits
        if lim is None:
            return []
        cap = lim.cap.get(f.name)
        out = [tok for tok, n in row.counts.items() if cap is not None and n >= cap]
        if j > 0 and row.prev is not None and row.prev not in out and (
                row.doubles >= lim.max_doubles.get(f.name, 0)
                or self.tok.itos[row.prev] not in lim.doubled
                or j - 1 not in lim.places.get(f.length, ())):
            out.append(row.prev)
        # no character twice in a line but as XX (the previous one is judged just above), and
        # no two-character sequence twice in the poem (repetition.py: real poems seldom do)
        stoi, cur = self.tok.stoi, row.cur
        again = set(cur[:-1])
        if cur:
            again.update(x[k + 1] for x in row.lines + (cur,) for k in range(len(x) - 1)
                         if x[k] == cur[-1])
        return out + [stoi[c] for c in again if c in stoi]

    def _banned(self, row: _Row, i: int) -> str:
        """Last characters that would repeat a line of this poem or copy a corpus line."""
        prefix = row.cur
        out = "".join(x[-1] for x in row.lines if x[:-1] == prefix)
        spec = self.specs[row.item]
        if self.index is not None and i >= len(spec.start):   # user lines are exempt
            out += self.index.completions(prefix)
        return out
