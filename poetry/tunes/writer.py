"""The tune writer: meter + key (+ rhythm, opening bars) -> folk tunes in ABC, used by the CLI,
batch runs, evaluation and app.

    writer = TuneWriter.load()                                   # data/models/tune
    writer.write("6/8", "Dmaj", rhythm="jig", start="|:A2B c2d|", n=2, seed=1)
    # -> [{"abc", "meter", "key", "rhythm", "score", "body"}]

The model writes bodies in C of the requested mode (how the corpus was normalised); the writer
transposes the user's opening bars into C, forces them as the decoder's prefix, and transposes
the result back to the requested key. Bar lengths, repeats, the length cap and the ban on 4-bar
copies of training tunes are rules applied while decoding (`poetry.tunes.rules.TuneConstraint`),
not retries. `candidates` samples per wanted tune keep the best by mean log-prob per token.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from shared.checkpoint import load_model
from shared.cli import check_count
from shared.decoding import GenerationConfig, derive_seed, generate, pad_batch
from shared.fp16 import for_generation

from . import abc
from .abc import Key, build_tune, parse_key, parse_meter
from .format import RHYTHMS, source_text
from .rules import TuneConstraint, load_windows

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "models" / "tune"
MAX_N = 10            # tunes per request
MAX_BARS = 32         # length cap (the rules close the tune in time)
MIN_BARS = 8
MAX_LEN = 600         # decoder steps; the constraint ends every tune well before


def check_n(n: int) -> int:
    return check_count(n, MAX_N, "tunes")


@dataclass(frozen=True)
class TuneRequest:
    meter: str                    # canonical, e.g. "6/8"
    key: Key                      # the user's key
    rhythm: str
    prefix: tuple = field(default=())   # token ids of the opening, in C of the key's mode

    @property
    def home(self) -> Key:        # the key the model writes in
        return Key("C", self.key.mode)


class TuneWriter:
    def __init__(self, model, tokenizer, card: dict, windows: Optional[set[int]] = None,
                 fp16: bool = True):
        """`model` (fp32) scores text; generation runs fp16 decoder weights unless fp16=False
        (shared/fp16.py)."""
        self.model, self.tok, self.card = model.eval(), tokenizer, card
        self.decoder = for_generation(model, fp16)
        self.windows = windows or set()
        self.rhythms_by_meter: dict = card.get("rhythms_by_meter") or {}
        seen = {r for row in self.rhythms_by_meter.values() for r in row}
        self.rhythms = [r for r in RHYTHMS if r in seen] or list(RHYTHMS)
        self.max_bars, self.min_bars = MAX_BARS, MIN_BARS
        self.last_removed_mass = 0.0

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_DIR, novelty: bool = True,
             fp16: bool = True) -> "TuneWriter":
        model, tok, card = load_model(model_dir)
        path = Path(model_dir) / "train_windows.npy"
        windows = load_windows(path) if novelty and path.exists() else None
        return cls(model, tok, card, windows, fp16)

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
        return r

    def request(self, meter: str, key: str, rhythm: Optional[str] = None,
                start: Optional[str] = None) -> TuneRequest:
        """Validate one request. Raises ValueError (one line) on bad input."""
        meter = parse_meter(meter)
        k = parse_key(key) if isinstance(key, str) else key
        rhythm = self.check_rhythm(rhythm, meter)
        prefix: tuple = ()
        if start is not None and str(start).strip():
            prefix = tuple(self._start_ids(str(start), meter, k))
        return TuneRequest(meter, k, rhythm, prefix)

    def _start_ids(self, start: str, meter: str, key: Key) -> list[int]:
        one = " ".join(start.split())
        # letters other than notes and rests are decorations in ABC: from a user, a typo
        bare = re.sub(r'"[^"]*"|![^!]*!|\[[A-Za-z]:[^\]]*\]', "", one)
        stray = re.findall(r"[H-Zh-wy]", bare)
        if stray:
            raise ValueError(f"--start {one!r} is not valid ABC here: unexpected "
                             f"{', '.join(map(repr, dict.fromkeys(stray)))} (notes are A-G a-g "
                             f"with ^ _ = , ' and lengths, rests z)")
        try:
            body = abc.normalise(one, key, target=Key("C", key.mode))
        except ValueError as e:
            raise ValueError(f"--start {one!r} is not ABC this model reads: {e}") from None
        if not body:
            raise ValueError(f"--start {one!r} holds no notes")
        ids = self.tok.encode(body)
        if self.tok.unk_id in ids:
            bad = [p for p, i in zip(self.tok.split(body), ids) if i == self.tok.unk_id]
            raise ValueError(f"--start {one!r} uses symbols the model does not know: "
                             f"{', '.join(dict.fromkeys(bad))}")
        why = TuneConstraint(self.tok, [meter], max_bars=self.max_bars).check_prefix(ids)
        if why:
            raise ValueError(f"--start {one!r} does not fit the meter {meter} and the tune "
                             f"rules: {_explain(abc.normalise(one, key), meter, why)}")
        return ids

    def _source(self, req: TuneRequest) -> list[int]:
        return self.tok.encode(source_text(req.meter, req.key.mode, req.rhythm))

    # -- generation ----------------------------------------------------------------------
    def generate(self, jobs: Sequence[tuple[TuneRequest, int, int]], temperature: float = 1.0,
                 candidates: int = 1, rules: bool = True, top_p: float = 1.0,
                 index: int = 1, keep_home: bool = False) -> list[list[dict]]:
        """jobs: (request, n, seed) each. One batched decode for all candidates of all jobs.
        Returns, per job, its n best distinct tunes (fewer only if candidates repeat);
        `keep_home` keeps each tune's body as the model wrote it (in C) under "home"."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        rows, reqs, seeds, owner = [], [], [], []
        for j, (req, n, seed) in enumerate(jobs):
            for c in range(n * candidates):
                rows.append(self._source(req))
                reqs.append(req)
                seeds.append(derive_seed(seed, c))
                owner.append(j)
        if not rows:
            return [[] for _ in jobs]
        src, src_len = pad_batch(rows)
        if rules:
            constraint = TuneConstraint(self.tok, [r.meter for r in reqs],
                                        max_bars=self.max_bars, min_bars=self.min_bars, windows=self.windows,
                                        prefixes=[r.prefix for r in reqs])
        else:
            constraint = _Prefix(self.tok.vocab_size, [r.prefix for r in reqs])
        cfg = GenerationConfig(strategy="sample", temperature=temperature, top_p=top_p,
                               max_len=MAX_LEN)
        with torch.inference_mode():
            out = generate(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                           eos_id=self.tok.eos_id, constraint=constraint, seeds=seeds)
        self.last_removed_mass = out.removed_mass
        results: list[list[dict]] = [[] for _ in jobs]
        ranked = sorted(zip(out.tokens, out.scores, owner, range(len(owner))),
                        key=lambda x: (x[2], -x[1], x[3]))
        for toks, score, j, _ in ranked:
            req, n, _ = jobs[j]
            if len(results[j]) >= n:
                continue
            home = self.tok.decode(toks)
            if any(t["_home"] == home for t in results[j]):
                continue
            results[j].append(self._tune(req, home, score, index + len(results[j])))
        for rs in results:
            for t in rs:
                home = t.pop("_home")
                if keep_home:
                    t["home"] = home
        return results

    def _tune(self, req: TuneRequest, home: str, score: float, index: int) -> dict:
        body = transpose_loose(home, req.home, req.key)
        return {"abc": build_tune(req.meter, str(req.key), req.rhythm, body, index),
                "meter": req.meter, "key": str(req.key), "rhythm": req.rhythm,
                "score": round(float(score), 4), "body": body, "_home": home}

    def write(self, meter: str, key: str, rhythm: Optional[str] = None,
              start: Optional[str] = None, n: int = 1, temperature: float = 1.0,
              seed: Optional[int] = None, candidates: int = 1, rules: bool = True
              ) -> list[dict]:
        """n tunes for the setting. Same seed, same tunes. Raises ValueError on bad input."""
        n = check_n(n)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        req = self.request(meter, key, rhythm, start)
        seed = int(torch.randint(0, 2**31, (1,))) if seed is None else seed
        return self.generate([(req, n, derive_seed(seed, 0))], temperature,
                             candidates=candidates, rules=rules)[0]


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


class _Prefix:
    """Rules off: only the user's opening is forced (plain sampling after it)."""

    def __init__(self, vocab: int, prefixes: Sequence[Sequence[int]]):
        self.V, self.prefixes = vocab, [list(p) for p in prefixes]

    def _masks(self):
        if not any(len(self.prefixes[r]) > self.pos for r in self.rows):
            return None
        m = torch.ones(len(self.rows), self.V, dtype=torch.bool)
        for k, r in enumerate(self.rows):
            p = self.prefixes[r]
            if self.pos < len(p):
                m[k] = False
                m[k, p[self.pos]] = True
        return m

    def begin(self, rows: torch.Tensor):
        self.rows, self.pos = rows.tolist(), 0
        return self._masks()

    def step(self, tokens: torch.Tensor):
        self.pos += 1
        return self._masks()

    def reorder(self, index: torch.Tensor) -> None:
        self.rows = [self.rows[i] for i in index.tolist()]
