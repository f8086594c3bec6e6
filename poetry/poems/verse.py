"""Verse knowledge for the regular Tang forms (近体诗), without torch.

* Forms: wujue 五绝 (4x5), qijue 七绝 (4x7), wulv 五律 (8x5), qilv 七律 (8x7).
* Rhyme books (`book`): "pingshui" (the default), the 30 level-tone groups of 平水韵, the rhyme
  book of regulated verse, with the classical tones (the entering tone 入声 counted as 仄, so 国
  月 白 are oblique; a character marked 多 stands either way); see poetry/poems/pingshui.py.
  "xinyun": the 14 groups of 中华新韵, keyed by pypinyin's strict finals (table in DESIGN.md),
  with modern Mandarin tones, 平 (level) = tones 1 and 2, 仄 (oblique) = tones 3 and 4; this
  merges eng, ing and ong into one group, which 平水韵 keeps apart. Under 平水韵 a character the
  table does not know takes its modern tones for 平仄 and never rhymes.
* Heteronyms (新韵 and modern tones): a character rhymes and has tones by its *common* readings
  only (`readings`):
  pypinyin's default reading, the readings its phrase dictionary gives the character inside
  words (看 kān in 看守, 思 sāi in 于思), and the few rare readings real Tang poems rhyme on
  (`RHYME_ATTESTED`, e.g. 斜 xiá with 家). A rare reading such as 惊 liáng never makes a
  rhyme. Measured on the 34,853 Tang training poems (even-line ends sharing a level group):
  all readings 73.8 %, default reading only 62.7 %, default + phrase readings 71.5 %,
  these common readings 73.7 %. `all_readings` keeps every reading pypinyin lists.
* Neutral tone (5): a neutral reading is ignored. A character with no toned reading (or unknown
  to pypinyin) is *neither* level nor oblique: it fits only free (⊙) positions and never rhymes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from pypinyin import Style, pinyin
from pypinyin.contrib.tone_convert import to_finals, to_initials

from . import pingshui

BOOKS = ("pingshui", "xinyun")
DEFAULT_BOOK = "pingshui"


def check_book(book: str) -> str:
    if book not in BOOKS:
        raise ValueError(f"unknown rhyme book {book!r}; choose pingshui (平水韵) or xinyun (中华新韵)")
    return book


def group_names(book: str = DEFAULT_BOOK) -> tuple[str, ...]:
    """The level-tone rhyme groups of a book."""
    return RHYME_GROUPS if check_book(book) == "xinyun" else pingshui.group_names()


@dataclass(frozen=True)
class Form:
    name: str
    lines: int
    length: int
    zh: str


FORMS: dict[str, Form] = {f.name: f for f in (
    Form("wujue", 4, 5, "五绝"), Form("qijue", 4, 7, "七绝"),
    Form("wulv", 8, 5, "五律"), Form("qilv", 8, 7, "七律"))}


def get_form(form: str | Form) -> Form:
    if isinstance(form, Form):
        return form
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    return FORMS[form]


def form_of(lines: Sequence[str]) -> Form | None:
    """The regular form with this shape, or None."""
    for f in FORMS.values():
        if len(lines) == f.lines and all(len(x) == f.length for x in lines):
            return f
    return None


def split_poem(text: str) -> list[str]:
    """'床前明月光，疑是地上霜。' -> ['床前明月光', '疑是地上霜'] (any CJK or ASCII punctuation)."""
    return [x for x in re.split(r"[，。,.;；？！?!：:、\s]+", text) if x]


# -- characters ---------------------------------------------------------------------------
def is_cjk(ch: str) -> bool:
    """A clean, common CJK ideograph (the basic block; extensions are rare variant forms)."""
    return len(ch) == 1 and "\u4e00" <= ch <= "\u9fff"


RHYME_TABLE: dict[str, tuple[str, ...]] = {
    "麻": ("a", "ia", "ua"), "波": ("o", "e", "uo"), "皆": ("ie", "ve"), "开": ("ai", "uai"),
    "微": ("ei", "uei"), "豪": ("ao", "iao"), "尤": ("ou", "iou"),
    "寒": ("an", "ian", "uan", "van"), "文": ("en", "in", "uen", "vn"),
    "唐": ("ang", "iang", "uang"), "庚": ("eng", "ing", "ueng", "ong", "iong"),
    "齐": ("i", "er", "v"), "支": ("-i",), "姑": ("u",)}
RHYME_GROUPS: tuple[str, ...] = tuple(RHYME_TABLE)
_FINAL_GROUP = {f: g for g, fs in RHYME_TABLE.items() for f in fs}
# After these initials the final "i" is the apical vowel -i (zhi chi shi ri zi ci si) -> 支.
_APICAL = {"zh", "ch", "sh", "r", "z", "c", "s"}


def syllable_group(syllable: str) -> str | None:
    """Rhyme group of one pinyin syllable in TONE3 form (e.g. 'shi4' -> '支')."""
    final = to_finals(syllable, strict=True)
    if final == "i" and to_initials(syllable, strict=True) in _APICAL:
        final = "-i"
    return _FINAL_GROUP.get(final)


# Rare (non-default, non-phrase) readings that Tang poems rhyme on: the character ends an even
# line in >= 3 training poems, >= 5 % of its rhyme uses, whose other rhyme characters share only
# this group (`attested_rhymes` over the Tang training split reproduces this table).
RHYME_ATTESTED: dict[str, str] = {
    "不": "尤", "么": "波", "亏": "齐", "他": "波", "余": "姑", "峒": "庚", "幷": "庚",
    "忘": "唐", "探": "寒", "斜": "麻", "枝": "齐", "浪": "唐", "离": "支", "胜": "庚",
    "落": "波", "衰": "微", "言": "文", "跳": "豪", "邪": "麻", "醒": "庚", "钿": "寒",
    "饧": "庚", "驯": "文"}


def _toned(syllables: Iterable[str]) -> tuple[tuple[str | None, int], ...]:
    out = []
    for syl in syllables:
        if syl[-1:] in ("1", "2", "3", "4"):
            r = (syllable_group(syl), int(syl[-1]))
            if r not in out:
                out.append(r)
    return tuple(out)


@lru_cache(maxsize=None)
def all_readings(ch: str) -> tuple[tuple[str | None, int], ...]:
    """(rhyme group, tone 1-4) of every toned reading pypinyin lists, most common first."""
    if not is_cjk(ch):
        return ()
    return _toned(pinyin(ch, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True,
                         errors=lambda x: [[] for _ in x])[0])


@lru_cache(maxsize=1)
def _phrase_readings() -> dict[str, frozenset[str]]:
    """Character -> the TONE3 readings pypinyin's phrase dictionary gives it inside words."""
    from pypinyin.constants import PHRASES_DICT
    from pypinyin.contrib.tone_convert import to_tone3
    tone3 = lru_cache(maxsize=None)(lambda s: to_tone3(s, neutral_tone_with_five=True))
    out: dict[str, set[str]] = {}
    for phrase, syls in PHRASES_DICT.items():     # ~47 k phrases, ~1.5 k distinct syllables
        if len(phrase) == len(syls):
            for c, s in zip(phrase, syls):
                out.setdefault(c, set()).add(tone3(s[0]))
    return {c: frozenset(s) for c, s in out.items()}


@lru_cache(maxsize=None)
def readings(ch: str) -> tuple[tuple[str | None, int], ...]:
    """(rhyme group, tone 1-4) of the character's common readings, most common first: the
    default reading, readings used in phrases, and a reading Tang rhymes attest."""
    return _common(ch, attested=True)


def _common(ch: str, attested: bool) -> tuple[tuple[str | None, int], ...]:
    if not is_cjk(ch):
        return ()
    syls = pinyin(ch, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True,
                  errors=lambda x: [[] for _ in x])[0]
    if not syls:
        return ()
    phrase = _phrase_readings().get(ch, frozenset())
    # a neutral default (们 men5) falls back on the first toned reading (men2)
    common = list(_toned([syls[0]] + [s for s in syls[1:] if s in phrase]) or _toned(syls)[:1])
    extra = RHYME_ATTESTED.get(ch) if attested else None
    for r in _toned(syls):
        if r not in common and r[0] == extra and r[1] <= 2:
            common.append(r)
    return tuple(common)


def tones(ch: str) -> frozenset[int]:
    """Modern Mandarin tones (1-4) of the common readings."""
    return frozenset(t for _, t in readings(ch))


def _classical(ch: str, book: str) -> str | None:
    """平, 仄 or 多 by 平水韵's tones; None under 新韵 or for a character the table lacks."""
    return pingshui.table()[1].get(ch) if check_book(book) == "pingshui" else None


def is_level(ch: str, book: str = DEFAULT_BOOK) -> bool:
    mark = _classical(ch, book)
    return mark in ("平", "多") if mark else any(t <= 2 for _, t in readings(ch))


def is_oblique(ch: str, book: str = DEFAULT_BOOK) -> bool:
    mark = _classical(ch, book)
    return mark in ("仄", "多") if mark else any(t >= 3 for _, t in readings(ch))


def rhyme_groups(ch: str) -> frozenset[str]:
    """新韵 groups of all common readings, whatever their tone."""
    return frozenset(g for g, _ in readings(ch) if g)


def level_rhyme_groups(ch: str, book: str = DEFAULT_BOOK) -> frozenset[str]:
    """Groups of the level-tone readings: what a rhyme position (平声韵) may use."""
    if check_book(book) == "pingshui":
        return pingshui.table()[0].get(ch, frozenset())
    return frozenset(g for g, t in readings(ch) if g and t <= 2)


def primary_is_level(ch: str, book: str = DEFAULT_BOOK) -> bool:
    """Whether the most common reading is level. A first line ending so is taken to rhyme."""
    mark = _classical(ch, book)
    if mark in ("平", "仄"):
        return mark == "平"
    r = readings(ch)
    return bool(r) and r[0][1] <= 2


def fits(ch: str, mark: str, book: str = DEFAULT_BOOK) -> bool:
    """Does the character fit a pattern mark: 平, 仄 or ⊙ (free)?"""
    return mark == "⊙" or (is_level(ch, book) if mark == "平" else is_oblique(ch, book))


def tone_marks(line: str, book: str = DEFAULT_BOOK) -> str:
    """平 / 仄 / ⊙ (both) / ？ (neither) per character, for messages."""
    return "".join({(True, False): "平", (False, True): "仄", (True, True): "⊙"}.get(
        (is_level(c, book), is_oblique(c, book)), "？") for c in line)


# -- 平仄 patterns -------------------------------------------------------------------------
_JUE5: tuple[tuple[str, ...], ...] = (        # the four 五绝 patterns of DESIGN.md
    ("⊙仄平平仄", "⊙平⊙仄平", "⊙平平仄仄", "⊙仄仄平平"),   # 仄起不入韵
    ("⊙平平仄仄", "⊙仄仄平平", "⊙仄平平仄", "⊙平⊙仄平"),   # 平起不入韵
    ("⊙仄仄平平", "⊙平⊙仄平", "⊙平平仄仄", "⊙仄仄平平"),   # 仄起入韵
    ("⊙平⊙仄平", "⊙仄仄平平", "⊙仄平平仄", "⊙平⊙仄平"))    # 平起入韵
_OPP = {"平": "仄", "仄": "平"}


def _seven(line5: str) -> str:
    # 七言 = two syllables opposite to the 五言 line's first two, then the 五言 line; the 五言
    # line's first syllable is ⊙ in every pattern, and so stays free as the 七言's third.
    return "⊙" + _OPP[line5[1]] + line5


def _lv(jue: tuple[str, ...]) -> tuple[str, ...]:
    # 律诗 = 绝句 + a 不入韵 stanza whose first line sticks (粘) to line 4: same 2nd syllable.
    second = next(p for p in _JUE5[:2] if p[0][1] == jue[3][1])
    return jue + second


def pattern_name(pattern: Sequence[str]) -> str:
    """E.g. '平起入韵': named by line 1's 2nd syllable and whether line 1 ends level."""
    first = pattern[0]
    return f"{first[1]}起{'入韵' if first[-1] == '平' else '不入韵'}"


@lru_cache(maxsize=None)
def patterns(form: str) -> tuple[tuple[str, ...], ...]:
    """The four standard patterns of a form, each a tuple of one 平/仄/⊙ string per line."""
    f = get_form(form)
    out = []
    for jue in _JUE5:
        p = _lv(jue) if f.lines == 8 else jue
        out.append(tuple(_seven(x) for x in p) if f.length == 7 else p)
    return tuple(out)


def pattern_mismatches(lines: Sequence[str], pattern: Sequence[str],
                       book: str = DEFAULT_BOOK) -> list[tuple[int, int]]:
    """(line, char) positions (0-based) where a character does not fit the pattern."""
    return [(i, j) for i, (line, pat) in enumerate(zip(lines, pattern))
            for j, (c, m) in enumerate(zip(line, pat)) if not fits(c, m, book)]


# -- rhyme helpers -------------------------------------------------------------------------
def rhyme_positions(n_lines: int) -> tuple[int, ...]:
    """0-based indices of the lines that must rhyme: 2, 4 (6, 8) in verse numbering."""
    return tuple(range(1, n_lines, 2))


def shared_rhyme(lines: Sequence[str], book: str = DEFAULT_BOOK) -> frozenset[str]:
    """Rhyme groups that all rhyming line ends share on a level reading (empty = no rhyme)."""
    ends = [lines[i][-1] for i in rhyme_positions(len(lines)) if lines[i]]
    if not ends:
        return frozenset()
    common = level_rhyme_groups(ends[0], book)
    for c in ends[1:]:
        common &= level_rhyme_groups(c, book)
    return common


def rhymes(lines: Sequence[str], book: str = DEFAULT_BOOK) -> bool:
    return bool(shared_rhyme(lines, book))


def rhyme_rate(poems: Iterable[Sequence[str]], book: str = DEFAULT_BOOK) -> float:
    """Fraction of poems (each a list of lines) whose even lines share a level rhyme group."""
    flags = [rhymes(p, book) for p in poems]
    return sum(flags) / len(flags) if flags else 0.0


# -- whole-poem check ----------------------------------------------------------------------
def check_poem(lines: Sequence[str], form: str | Form, rhyme: bool = True,
               tones: str | None = None, acrostic: str | None = None,
               book: str = DEFAULT_BOOK) -> list[str]:
    """Problems of a poem against its form and rules, one line each; empty = valid.
    `tones="strict"` requires one standard 平仄 pattern to fit every character. Rhyme and
    tones follow `book` (平水韵 and classical tones by default)."""
    f = get_form(form)
    check_book(book)
    problems = []
    if len(lines) != f.lines:
        problems.append(f"{f.zh} needs {f.lines} lines, got {len(lines)}")
    for i, line in enumerate(lines):
        if len(line) != f.length:
            problems.append(f"line {i + 1} has {len(line)} characters, {f.zh} needs {f.length}")
        bad = [c for c in line if not is_cjk(c)]
        if bad:
            problems.append(f"line {i + 1} has non-Chinese characters {''.join(bad)!r}")
    if problems:
        return problems           # rhyme and tones make no sense on a malformed poem
    if acrostic is not None:
        heads = "".join(x[0] for x in lines)
        if heads != acrostic:
            problems.append(f"acrostic heads are {heads!r}, expected {acrostic!r}")
    if rhyme and not rhymes(lines, book):
        ends = [lines[i][-1] for i in rhyme_positions(f.lines)]
        flat = [c for c in ends if not level_rhyme_groups(c, book)]
        if flat:
            problems.append(f"rhyme characters without a level-tone reading: {''.join(flat)}")
        else:
            groups = ", ".join(f"{c}:{''.join(sorted(level_rhyme_groups(c, book)))}"
                               for c in ends)
            problems.append(f"lines {', '.join(str(i + 1) for i in rhyme_positions(f.lines))}"
                            f" share no rhyme group ({groups})")
    if tones == "strict":
        best = min(patterns(f.name), key=lambda p: len(pattern_mismatches(lines, p, book)))
        miss = pattern_mismatches(lines, best, book)
        if miss:
            where = ", ".join(f"{lines[i][j]}@{i + 1}.{j + 1}" for i, j in miss[:6])
            problems.append(f"no standard 平仄 pattern fits; closest {pattern_name(best)} "
                            f"misses {len(miss)} ({where})")
    elif tones not in (None, "off"):
        raise ValueError(f"tones must be None or 'strict', got {tones!r}")
    return problems


def attested_rhymes(poems: Iterable[Sequence[str]], min_poems: int = 3,
                    min_share: float = 0.05) -> dict[str, str]:
    """Rare readings real poems rhyme on (how `RHYME_ATTESTED` was measured): for each even-line
    end whose other rhyme characters share exactly one group on their default and phrase
    readings, that group is counted for it; a group the character reaches only through a rare
    reading, counted in >= min_poems poems and >= min_share of its uses, is attested."""
    def common(c: str) -> frozenset[str]:
        return frozenset(g for g, t in _common(c, attested=False) if g and t <= 2)

    uses: dict[str, dict[str, int]] = {}
    for lines in poems:
        ends = [lines[i][-1] for i in rhyme_positions(len(lines))]
        for k, c in enumerate(ends):
            others = [common(x) for j, x in enumerate(ends) if j != k]
            shared = frozenset.intersection(*others) if others else frozenset()
            if len(shared) == 1:
                g = next(iter(shared))
                uses.setdefault(c, {}).setdefault(g, 0)
                uses[c][g] += 1
    out = {}
    for c, groups in uses.items():
        total = sum(groups.values())
        rare = {g for g, t in all_readings(c) if g and t <= 2} - common(c)
        for g, n in sorted(groups.items(), key=lambda x: -x[1]):
            if g in rare and n >= min_poems and n / total >= min_share:
                out[c] = g
                break
    return dict(sorted(out.items()))
