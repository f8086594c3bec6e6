"""The poem writer: theme + form -> classical Chinese poems, used by the CLI, batch runs and app.

    writer = PoemWriter.load()                       # data/models/poem
    writer.write("明月", form="qijue", n=2, seed=1)   # -> [{"theme", "form", "keywords", "poem",
                                                     #      "lines", "score"(, "relaxed")}]
    writer.write("秋夜", keywords="蟋蟀 砧声")         # plan given by the user

Planning (poetry/poems/planning.py): unless the user gives keywords, every candidate samples
its own 4 keywords expanded from the theme, and the model writes from theme + keywords,
pulled toward them while decoding (rules.KeywordBias, weighted decoding).

Form, rhyme, acrostic heads, opening lines, novelty and repetition limits are rules applied through the core's
constraint hook while decoding (poetry/poems/rules.py), not retries. Where a rule had to give
way (no character kept them all), the poem says so: "relaxed" lists each (rule, line), e.g.
[["rhyme", 4]], and is absent where every rule held. Each request samples
`candidates` poems per wanted poem and keeps the best by mean log-probability per character
plus a bonus for characters tied to the theme (`rank_score`; shared/writer.py ranks).
"""
from __future__ import annotations

import random
import re
import unicodedata
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

from shared.cli import check_flag, check_text
from shared.decoding import GenerationConfig, derive_seed
from shared.writer import Outcome, Writer

from .format import KEYWORDS, MAX_KEYWORDS, MAX_THEME, source_text
from .planning import Planner
from .repetition import Limits
from .rules import LineIndex, PoemSpec, make_spec, poem_rules, relaxations
from .scenes import Seasons
from .themes import Associations
from .verse import get_form, is_cjk, split_poem

MAX_N = 20            # poems per request
LINES = "lines.npz.xz"                 # the corpus lines (LineIndex) shipped beside the model
REPETITION = "repetition.json"      # Limits shipped beside the model
THEMES = "themes.json"              # Associations shipped beside the model
PLANNER = "keywords.json"           # Planner shipped beside the model
SEASONS = "seasons.json"            # the season lexicon (scenes.py) shipped beside the model
SEASON_PENALTY = 1.0  # nats off a candidate whose seasons conflict (spring and autumn...): over
                      # 1,600 default poems 6.4 % conflicted, real Tang poems 1.3 %; the penalty
                      # outweighs the spread of the candidates' scores (about 0.3), so such a
                      # poem is kept only where every candidate conflicts
KEYWORD_CHARS = 4                   # characters kept of one user keyword
THEME_WEIGHT = 5.0    # rank = mean log-prob + 5 x theme share: over 600 poems / 30 themes (3
                      # candidates, 4 keywords, keyword bias 2) the classifier's top-3 rate
                      # (poetry/poems/themes.py) was 0.69 / 0.70 / 0.72 at weights 2 / 3 / 5
                      # for a mean log-prob per character of -2.55 / -2.57 / -2.60
TOP_K = 40            # sample among the 40 likeliest characters: a top-p sort over the whole
                      # vocabulary cost ~0.4 ms of a ~4 ms step (profiled)


def clean_theme(theme: str, known) -> str:
    """Keep the theme's known Chinese characters; warn about dropped ones (repairable);
    ValueError when nothing usable is left."""
    theme = check_text("" if theme is None else theme, "the theme").strip()
    if not theme:
        raise ValueError("the theme is empty; give one or more Chinese characters, e.g. 明月")
    cjk = [c for c in theme if is_cjk(c)]
    if not cjk:
        raise ValueError(f"the theme {theme!r} has no Chinese characters; e.g. 明月, 秋思")
    unknown = "".join(dict.fromkeys(c for c in cjk if not known(c)))
    kept = "".join(c for c in cjk if known(c))
    if not kept:
        raise ValueError(f"no character of the theme {theme!r} is known to the model")
    other = "".join(c for c in theme if not is_cjk(c) and not c.isspace()
                    and not unicodedata.category(c).startswith("P"))
    if other:                               # 明月hello: the poem is about 明月, and says so
        warnings.warn(f"the theme's non-Chinese characters were dropped: {other}")
    if unknown:
        warnings.warn(f"theme characters unknown to the model were dropped: {unknown}")
    if len(kept) > MAX_THEME:
        warnings.warn(f"theme cut to its first {MAX_THEME} characters: {kept[:MAX_THEME]}")
        kept = kept[:MAX_THEME]
    return kept


def clean_keywords(keywords, known) -> tuple[str, ...]:
    """User keywords (a string split at spaces and commas, or a list) by the theme's rules:
    unknown characters dropped with a warning, ValueError when nothing usable is left."""
    if keywords is None:
        return ()
    if isinstance(keywords, str):
        keywords = re.split(r"[\s,，、;；]+", keywords)
    elif not isinstance(keywords, (list, tuple)) or not all(isinstance(k, str) for k in keywords):
        raise ValueError(f"keywords must be a string or a list of strings, got {keywords!r}")
    for k in keywords:
        check_text(k, "keywords")
    words = [k.strip() for k in keywords if k.strip()]
    if not words:
        return ()
    kept = []
    for w in words:
        good = "".join(c for c in w if is_cjk(c) and known(c))[:KEYWORD_CHARS]
        if not good:
            warnings.warn(f"keyword {w!r} dropped: no Chinese character known to the model")
        elif good != w:
            warnings.warn(f"keyword {w!r} cut to {good!r} (known Chinese characters, at most "
                          f"{KEYWORD_CHARS})")
        if good:
            kept.append(good)
    if not kept:
        raise ValueError(f"no keyword of {keywords!r} has a character known to the model")
    kept = list(dict.fromkeys(kept))
    if len(kept) > MAX_KEYWORDS:
        warnings.warn(f"only the first {MAX_KEYWORDS} keywords are used: "
                      f"{' '.join(kept[:MAX_KEYWORDS])}")
    return tuple(kept[:MAX_KEYWORDS])


@dataclass(frozen=True)
class PoemRequest:
    theme: str                    # cleaned: known Chinese characters only
    spec: PoemSpec
    keywords: tuple[str, ...] = ()    # the user's plan; else each candidate samples its own
    plan: bool = True                 # expand the theme into keywords (when the model can)


class PoemWriter(Writer):
    MODEL, MAX_N, WHAT, TEXT = "poem", MAX_N, "poems", "poem"
    # 0.7: over 120 poems / 30 themes (evaluate.theme_relevance's requests, 3 candidates), the
    # same theme relevance as 0.8 (top-3 0.525 each) for 0.11 nats more mean log-prob per
    # character (-2.80 vs -2.92)
    # 5 candidates ranked with the critic (shared/critic.py) at 0.15 per logit (its logits
    # spread about ten times the model's scores): 100 七绝 in one call take 1.8 x the time of
    # 3 candidates (8 would take 2.8 x), one 七律 1.15 x
    TEMPERATURE, CANDIDATES, CRITIC_WEIGHT = 0.7, 5, 0.15

    def __init__(self, model, tokenizer, card: dict, lines: Optional[LineIndex] = None,
                 limits: Optional[Limits] = None, themes: Optional[Associations] = None,
                 planner: Optional[Planner] = None, seasons: Optional[Seasons] = None,
                 precision: str = "auto"):
        """`lines`: the corpus lines no poem may copy (None = no novelty rule); `limits`: how
        often a character may repeat or double in a poem (None = no such cap); `themes`: the
        characters associated with theme characters, for ranking (None = model score only);
        `planner`: expands themes into keywords (None, or a model trained without plans:
        poems from the theme alone)."""
        super().__init__(model, tokenizer, card, precision)
        self.lines, self.limits, self.themes, self.seasons = lines, limits, themes, seasons
        self.planner = planner if KEYWORDS in tokenizer.specials else None

    @classmethod
    def extras(cls, model_dir: Path, novelty: bool = True, repetition: bool = True,
               relevance: bool = True, planning: bool = True, scenes: bool = True) -> dict:
        path, rep, th = model_dir / LINES, model_dir / REPETITION, model_dir / THEMES
        plan, sea = model_dir / PLANNER, model_dir / SEASONS
        return {"lines": LineIndex.load(path) if novelty and path.exists() else None,
                "limits": Limits.load(rep) if repetition and rep.exists() else None,
                "themes": Associations.load(th) if relevance and th.exists() else None,
                "planner": Planner.load(plan) if planning and plan.exists() else None,
                "seasons": Seasons.load(sea) if scenes and sea.exists() else None}

    # -- requests ------------------------------------------------------------------------
    def request(self, theme: str, form: str = "qijue", acrostic: Optional[str] = None,
                start=None, rhyme: bool | str = True, tones: Optional[str] = None,
                keywords=None, plan: bool = True) -> PoemRequest:
        """Validate one request. Raises ValueError on bad input."""
        spec = make_spec(form, acrostic=acrostic, start=start, rhyme=rhyme, tones=tones,
                         tokenizer=self.tok)
        known = lambda c: c in self.tok.stoi
        words = clean_keywords(keywords, known)
        if words and KEYWORDS not in self.tok.specials:
            warnings.warn("this model was trained without keyword plans; keywords ignored")
            words = ()
        return PoemRequest(clean_theme(theme, known), spec, words, check_flag(plan, "plan"))

    # -- what the shared writer needs --------------------------------------------------------
    def candidate(self, req: PoemRequest, seed: int) -> PoemRequest:
        """A candidate's plan: the user's keywords, else 4 sampled from the theme."""
        if req.keywords or not req.plan or self.planner is None:
            return req
        return replace(req, keywords=tuple(self.planner.expand(req.theme, random.Random(seed))))

    def source(self, req: PoemRequest) -> list[int]:
        # keywords are only ever set for a model trained with plans (request, candidate)
        return self.tok.encode(source_text(req.spec.form, req.theme, req.keywords))

    def rules(self, reqs: Sequence[PoemRequest], on: bool):
        return poem_rules(self.tok, [r.spec for r in reqs], self.lines, self.limits,
                          [r.keywords for r in reqs]) if on else None

    def settings(self, reqs: Sequence[PoemRequest], temperature: float,
                 top_k: int = TOP_K) -> GenerationConfig:
        forms = [get_form(r.spec.form) for r in reqs]
        return GenerationConfig(strategy="sample", temperature=temperature, top_k=top_k,
                                max_len=max(f.lines * (f.length + 1) for f in forms) + 1)

    def rank_score(self, req: PoemRequest, text: str, score: float) -> float:
        """Model score plus THEME_WEIGHT x the share of characters tied to the theme, less
        SEASON_PENALTY where the poem's seasons conflict."""
        if self.themes is not None:
            score += THEME_WEIGHT * self.themes.relevance(req.theme, text)
        if self.seasons is not None and self.seasons.conflicts(split_poem(text)):
            score -= SEASON_PENALTY
        return score

    def result(self, req: PoemRequest, text: str, score: float, rank: int) -> dict:
        return {"theme": req.theme, "form": req.spec.form, "keywords": list(req.keywords),
                "poem": text,
                "lines": split_poem(text), "score": round(score, 4)}

    def run(self, jobs, temperature=None, candidates=None, rules=True, **options) -> Outcome:
        """As `Writer.run`; with the rules on, each poem where a rule gave way gets "relaxed":
        its (rule, line) pairs (rules.relaxations: the rules' own record, read off the poem)."""
        out = super().run(jobs, temperature, candidates, rules, **options)
        if rules:
            for (req, _, _), poems in zip(jobs, out.results):
                for p in poems:
                    where = relaxations(self.tok, req.spec, p["poem"], self.lines, self.limits)
                    if where:
                        p["relaxed"] = [list(x) for x in where]
        return out

    # -- the API -------------------------------------------------------------------------
    def write(self, theme: str, form: str = "qijue", n: int = 1, acrostic: Optional[str] = None,
              start=None, rhyme: bool | str = True, tones: Optional[str] = None,
              temperature: float = TEMPERATURE, seed: Optional[int] = None,
              candidates: int = CANDIDATES, rules: bool = True, keywords=None,
              plan: bool = True) -> list[dict]:
        """n poems on `theme` (`keywords`: the plan, e.g. "蟋蟀 砧声"; `plan=False`: from the
        theme alone). Same seed, same poems. Raises ValueError on bad input."""
        n = self.check_n(n)
        req = self.request(theme, form, acrostic, start, rhyme, tones, keywords, plan)
        job = (req, n, derive_seed(self.seed(seed), 0))
        return self.generate([job], temperature, candidates, rules)[0]

    def stream(self, theme: str, form: str = "qijue", acrostic: Optional[str] = None,
               start=None, rhyme: bool | str = True, tones: Optional[str] = None,
               temperature: float = TEMPERATURE, seed: Optional[int] = None,
               candidates: int = CANDIDATES, keywords=None, plan: bool = True) -> Iterator[str]:
        """The poem `write(..., n=1)` returns for the same request and seed, yielded as its
        growing text once it is chosen (shared/writer.py `stream_job`); returns that `write`
        result itself."""
        req = self.request(theme, form, acrostic, start, rhyme, tones, keywords, plan)
        return (yield from self.stream_job((req, 1, derive_seed(self.seed(seed), 0)),
                                           temperature, candidates))
