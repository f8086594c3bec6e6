"""The tune writer: meter + key (+ rhythm, opening bars) -> folk tunes in ABC, used by the CLI,
batch runs, evaluation and app.

    writer = TuneWriter.load()                                   # data/models/tune
    writer.write("6/8", "Dmaj", rhythm="jig", start="|:A2B c2d|", n=2, seed=1, form="AABB")
    # -> [{"abc", "meter", "key", "rhythm", "form", "score", "body"}]

The model writes bodies in C of the requested mode (how the corpus was normalised); the writer
transposes the user's opening bars into C, forces them as the decoder's prefix, and transposes
the result back to the requested key. Bar lengths, repeats, the form (AABB: two repeated 8-bar
parts; AB: two 8-bar parts; free: any length up to the cap; the default per rhythm is the
corpus's, `poetry.tunes.style`), the final tonic, the pitch range and the share of notes outside
the mode (the corpus's figures for the rhythm), the length cap and the ban on 4-bar copies of
training tunes are rules applied while decoding (`poetry.tunes.rules.tune_rules`), not retries. `candidates` samples per wanted tune keep the best by mean log-prob per token
(shared/writer.py).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from shared.cli import check_text
from shared.decoding import GenerationConfig, derive_seed
from shared.writer import Writer

from . import abc
from .abc import Key, build_tune, parse_key, parse_meter
from .format import RHYTHMS, source_text
from .rules import FORMS, Phrase, Pitches, TuneConstraint, load_windows, tune_rules
from .style import style_of

MAX_N = 10            # tunes per request
MAX_BARS = 32         # length cap (the rules close the tune in time)
MIN_BARS = 8
MAX_LEN = 600         # decoder steps; the constraint ends every tune well before


@dataclass(frozen=True)
class TuneRequest:
    meter: str                    # canonical, e.g. "6/8"
    key: Key                      # the user's key
    rhythm: str
    prefix: tuple = field(default=())   # token ids of the opening, in C of the key's mode
    form: str = "free"            # a FORMS name

    @property
    def home(self) -> Key:        # the key the model writes in
        return Key("C", self.key.mode)


def known_rhythms(card: dict) -> list[str]:
    """The rhythms a model was trained on (its card's table), in RHYTHMS order."""
    seen = {r for row in (card.get("rhythms_by_meter") or {}).values() for r in row}
    return [r for r in RHYTHMS if r in seen] or list(RHYTHMS)


class TuneWriter(Writer):
    MODEL, MAX_N, WHAT, TEXT = "tune", MAX_N, "tunes", "abc"
    TEMPERATURE, CANDIDATES, CRITIC_WEIGHT = 1.0, 4, 0.3    # chosen by a blind read
    # the soft phrase rules per rhythm (`rules.Phrase`, nats). Hornpipes: a coordinate search
    # on 120 tunes (4 candidates, the critic on) towards the training tunes' mean rates. Jigs
    # and reels: the same search, then fewer dotted figures and rests and no runs of one note,
    # which blind readers preferred to the corpus's rates (docs/tunes.md);
    # `python -m poetry.evaluate tune` reports each rate beside the corpus's range
    PHRASING = {
        "jig": Phrase(restate=4.0, share=12.0, land=2.0, dotted=-0.5, same=5.5, bar4=-1.0,
                      rest=-2.25, fine=-30.0, run=2.0),
        "reel": Phrase(restate=5.33, share=6.0, land=1.0, dotted=0.0, same=2.0, rest=-1.0,
                       fine=-30.0, run=2.0),
        "hornpipe": Phrase(restate=4.4, share=12.0, land=3.0, dotted=-0.9, same=5.5, bar4=0.5,
                           rest=-1.0, run=-1.25)}

    def __init__(self, model, tokenizer, card: dict, windows: Optional[set[int]] = None,
                 precision: str = "auto"):
        """`windows`: hashes of the training tunes' 4-bar windows, which no tune may copy."""
        super().__init__(model, tokenizer, card, precision)
        self.windows = windows or set()
        self.phrasing: dict = dict(self.PHRASING)
        self._masks: dict = {}          # TuneConstraint's masks, kept across batches (speed)
        self.rhythms_by_meter: dict = card.get("rhythms_by_meter") or {}
        self.rhythms = known_rhythms(card)

    @classmethod
    def extras(cls, model_dir: Path, novelty: bool = True) -> dict:
        path = model_dir / "train_windows.npy"
        return {"windows": load_windows(path) if novelty and path.exists() else None}

    # -- requests ------------------------------------------------------------------------
    def default_rhythm(self, meter: str) -> str:
        """The most common rhythm of `meter` in training, else "other"."""
        row = self.rhythms_by_meter.get(meter) or {}
        return max(row, key=row.get) if row else "other"

    def check_rhythm(self, rhythm: Optional[str], meter: str) -> str:
        if rhythm is None or not str(rhythm).strip():
            return self.default_rhythm(meter)
        r = " ".join(str(rhythm).lower().replace("-", " ").replace("_", " ").split())
        if r not in RHYTHMS:
            raise ValueError(f"unknown rhythm {rhythm!r}: use one of {', '.join(self.rhythms)}")
        if r not in self.rhythms:
            warnings.warn(f"the model has no {r} tunes (folded into 'other' in training); "
                          f"writing rhythm 'other'")
            return "other"
        row = self.rhythms_by_meter.get(meter) or {}
        here, total = row.get(r, 0), sum(row.values())
        if r != "other" and row and here < max(5, 0.01 * total):     # e.g. a reel in 6/8
            usual = max(self.rhythms_by_meter, key=lambda m: self.rhythms_by_meter[m].get(r, 0))
            warnings.warn(f"only {here} of the {total:,} training tunes in {meter} are "
                          f"{r!r}; {r!r} tunes are mostly in {usual}")
        return r

    @staticmethod
    def check_form(form: Optional[str], rhythm: str) -> str:
        """A FORMS name (any case); none given: the rhythm's default (its corpus's form)."""
        if form is None or not str(form).strip():
            return style_of(rhythm).form
        f = {name.lower(): name for name in FORMS}.get(str(form).strip().lower())
        if f is None:
            raise ValueError(f"unknown form {form!r}: use one of {', '.join(FORMS)}")
        return f

    def request(self, meter: str, key: str, rhythm: Optional[str] = None,
                start: Optional[str] = None, form: Optional[str] = None) -> TuneRequest:
        """Validate one request. Raises ValueError (one line) on bad input."""
        meter = parse_meter(meter)
        k = key if isinstance(key, Key) else parse_key(check_text(key, "the key"))
        rhythm = check_text(rhythm, "the rhythm", optional=True)
        start = check_text(start, "the opening bars", optional=True)
        form = check_text(form, "the form", optional=True)
        rhythm = self.check_rhythm(rhythm, meter)
        form = self.check_form(form, rhythm)
        prefix: tuple = ()
        if start is not None and str(start).strip():
            prefix = tuple(self._start_ids(str(start), meter, k, form))
        return TuneRequest(meter, k, rhythm, prefix, form)

    def _start_ids(self, start: str, meter: str, key: Key, form: str = "free") -> list[int]:
        one = " ".join(start.split())
        # letters other than notes and rests are decorations in ABC: from a user, a typo
        bare = re.sub(r'"[^"]*"|![^!]*!|\[[A-Za-z]:[^\]]*\]', "", one)
        stray = re.findall(r"[H-Zh-wy]", bare)
        if stray:
            raise ValueError(f"the opening bars {one} are not valid ABC: unexpected "
                             f"{', '.join(map(repr, dict.fromkeys(stray)))} (notes are A-G a-g "
                             f"with ^ _ = , ' and lengths, rests z)")
        try:
            body = abc.normalise(one, key, target=Key("C", key.mode))
        except ValueError as e:
            raise ValueError(f"the opening bars {one} are not ABC this model reads: {e}") \
                from None
        if not body:
            raise ValueError(f"the opening bars {one} hold no notes")
        if FORMS[form] and FORMS[form][0] and "|:" not in abc.tokenize(body):
            body = "|:" + body          # the first part repeats from the top: reads the same
        ids = self.tok.encode(body)
        if self.tok.unk_id in ids:
            bad = [p for p, i in zip(self.tok.split(body), ids) if i == self.tok.unk_id]
            raise ValueError(f"the opening bars {one} use symbols the model does not know: "
                             f"{', '.join(dict.fromkeys(bad))}")
        why = TuneConstraint(self.tok, [meter], max_bars=MAX_BARS, forms=[form],
                             cache=self._masks).check_prefix(ids)
        if why:
            raise ValueError(f"the opening bars {one} do not fit the meter {meter}, the form {form} "
                             f"and the tune rules: {_explain(abc.normalise(one, key), meter, why)}")
        return ids

    # -- what the shared writer needs --------------------------------------------------------
    def source(self, req: TuneRequest) -> list[int]:
        return self.tok.encode(source_text(req.meter, req.key.mode, req.rhythm))

    def critic_ids(self, req: TuneRequest, text: str) -> list[int]:
        """The setting tokens, then the body in C of the mode (as `poetry.tunes.critic` reads)."""
        return self.source(req) + self.tok.encode(text)

    def rules(self, reqs: Sequence[TuneRequest], on: bool):
        return tune_rules(self.tok, [r.meter for r in reqs], [r.prefix for r in reqs], on,
                          pitches=[pitches(r) for r in reqs], forms=[r.form for r in reqs],
                          max_bars=MAX_BARS, min_bars=MIN_BARS, windows=self.windows,
                          cache=self._masks,
                          phrasing=[self.phrasing.get(r.rhythm, Phrase()) for r in reqs])

    def settings(self, reqs: Sequence[TuneRequest], temperature: float,
                 top_p: float = 1.0) -> GenerationConfig:
        return GenerationConfig(strategy="sample", temperature=temperature, top_p=top_p,
                                max_len=MAX_LEN)

    def result(self, req: TuneRequest, home: str, score: float, rank: int) -> dict:
        """`home`: the body as the model wrote it, in C of the mode; X: numbers from 1."""
        body = transpose_loose(home, req.home, req.key)
        return {"abc": build_tune(req.meter, str(req.key), req.rhythm, body, rank + 1),
                "meter": req.meter, "key": str(req.key), "rhythm": req.rhythm, "form": req.form,
                "score": round(float(score), 4), "body": body, "home": home}

    # -- the API -------------------------------------------------------------------------
    def write(self, meter: str, key: str, rhythm: Optional[str] = None,
              start: Optional[str] = None, n: int = 1, temperature: float = TEMPERATURE,
              seed: Optional[int] = None, candidates: int = CANDIDATES, rules: bool = True,
              form: Optional[str] = None) -> list[dict]:
        """n tunes for the setting. Same seed, same tunes. Raises ValueError on bad input."""
        n = self.check_n(n)
        req = self.request(meter, key, rhythm, start, form)
        return self.generate([(req, n, derive_seed(self.seed(seed), 0))], temperature,
                             candidates, rules)[0]


def pitches(req: TuneRequest) -> Pitches:
    """The rhythm's corpus range (in the requested key) and out-of-mode share, as pitch rules
    in the key the model writes."""
    style, shift = style_of(req.rhythm), abc.semitones(req.home, req.key)
    return Pitches(req.key.mode, style.low - shift, style.high - shift, style.out_of_mode)


def _explain(start: str, meter: str, why: str) -> str:
    """A user's view of a rejected opening (normalised, in the user's key): the bar whose
    length is wrong, else the constraint's reason with the token as the user wrote it."""
    full = abc.bar_length(meter)
    toks = abc.tokenize(start)
    for i, (_, dur, close) in enumerate(abc.bars(toks)):
        if dur > full or (close and 0 < i and dur != full):
            return f"bar {i + 1} lasts {dur} eighths, {meter} needs {full}"
    m = re.match(r"token (\d+) \(", why)
    if m and int(m.group(1)) <= len(toks):
        n = int(m.group(1))
        return f"{toks[n - 1]!r} (symbol {n} of {''.join(toks)!r}) breaks the tune rules there"
    return why


def transpose_loose(body: str, src: Key, dst: Key) -> str:
    """`abc.transpose`, and for a body that does not read as a whole (only rules-off output)
    bar by bar, then token by token; a piece that cannot be transposed stays as it is."""
    try:
        return abc.transpose(body, src, dst)
    except ValueError:
        pass
    out, bar = [], []
    for tok in abc.tokenize(body) + ["|"]:
        if tok not in abc.BARS:
            bar.append(tok)
            continue
        try:
            out.append(abc.transpose("".join(bar), src, dst))
        except ValueError:
            for t in bar:
                try:
                    out.append(abc.transpose(t, src, dst) if abc.token_kind(t) == "note" else t)
                except ValueError:
                    out.append(t)
        out.append(tok)
        bar = []
    return "".join(out)[:-1]
