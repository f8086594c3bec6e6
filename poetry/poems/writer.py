"""The poem writer: theme + form -> classical Chinese poems, used by the CLI, batch runs and app.

    writer = PoemWriter.load()                       # data/models/poem
    writer.write("明月", form="qijue", n=2, seed=1)   # -> [{"theme", "form", "poem", "lines", "score"}]

Form, rhyme, acrostic heads, opening lines and novelty are rules applied through the core's
constraint hook while decoding (poetry/poem_rules.py), not retries. Each request samples
`candidates` poems per wanted poem and keeps the best by mean log-probability per character.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from shared.checkpoint import load_model
from shared.cli import check_count
from shared.decoding import GenerationConfig, derive_seed, generate, pad_batch, stream
from shared.fp16 import for_generation

from .format import MAX_THEME, source_text
from .rules import LineIndex, PoemConstraint, PoemSpec, make_spec
from .verse import get_form, is_cjk, split_poem

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "models" / "poem"
MAX_N = 20            # poems per request
TOP_K = 40            # sample among the 40 likeliest characters: a top-p sort over the whole
                      # vocabulary cost ~0.4 ms of a ~4 ms step (profiled)


def clean_theme(theme: str, known) -> str:
    """Keep the theme's known Chinese characters; warn about dropped ones (repairable);
    ValueError when nothing usable is left."""
    theme = (theme or "").strip()
    if not theme:
        raise ValueError("the theme is empty; give one or more Chinese characters, e.g. 明月")
    cjk = [c for c in theme if is_cjk(c)]
    if not cjk:
        raise ValueError(f"the theme {theme!r} has no Chinese characters; e.g. 明月, 秋思")
    unknown = "".join(dict.fromkeys(c for c in cjk if not known(c)))
    kept = "".join(c for c in cjk if known(c))
    if not kept:
        raise ValueError(f"no character of the theme {theme!r} is known to the model")
    if unknown:
        warnings.warn(f"theme characters unknown to the model were dropped: {unknown}")
    if len(kept) > MAX_THEME:
        warnings.warn(f"theme cut to its first {MAX_THEME} characters: {kept[:MAX_THEME]}")
        kept = kept[:MAX_THEME]
    return kept


def check_n(n: int) -> int:
    return check_count(n, MAX_N, "poems")


class PoemWriter:
    def __init__(self, model, tokenizer, card: dict, lines: Optional[LineIndex] = None,
                 fp16: bool = True):
        """`model` (fp32) scores text; generation runs fp16 decoder weights unless fp16=False
        (shared/fp16.py; the speed and perplexity of both: python -m poetry.evaluate poem)."""
        self.model, self.tok, self.card, self.lines = model.eval(), tokenizer, card, lines
        self.decoder = for_generation(model, fp16)

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_DIR, novelty: bool = True,
             fp16: bool = True) -> "PoemWriter":
        model, tok, card = load_model(model_dir)
        lines_file = Path(model_dir) / "lines.txt.gz"
        lines = LineIndex.load(lines_file) if novelty and lines_file.exists() else None
        return cls(model, tok, card, lines, fp16)

    # -- requests ------------------------------------------------------------------------
    def request(self, theme: str, form: str = "qijue", acrostic: Optional[str] = None,
                start=None, rhyme: bool = True, tones: Optional[str] = None) -> tuple[str, PoemSpec]:
        """Validate one request -> (clean theme, spec). Raises ValueError on bad input."""
        spec = make_spec(form, acrostic=acrostic, start=start, rhyme=rhyme, tones=tones,
                         tokenizer=self.tok)
        return clean_theme(theme, lambda c: c in self.tok.stoi), spec

    def _source(self, theme: str, form: str) -> list[int]:
        return self.tok.encode(f"<{form}>{theme}")

    def generate(self, jobs: Sequence[tuple[str, PoemSpec, int, int]], temperature: float = 0.8,
                 top_k: int = TOP_K, candidates: int = 3, rules: bool = True) -> list[list[dict]]:
        """jobs: (theme, spec, n, seed) each. One batched decode for all candidates of all jobs.
        Returns, per job, its n best distinct poems."""
        rows, specs, seeds, owner = [], [], [], []
        for j, (theme, spec, n, seed) in enumerate(jobs):
            for c in range(n * candidates):
                rows.append(self._source(theme, spec.form))
                specs.append(spec)
                seeds.append(derive_seed(seed, c))
                owner.append(j)
        src, src_len = pad_batch(rows)
        constraint = PoemConstraint(self.tok, specs, self.lines) if rules else None
        max_len = max(get_form(s.form).lines * (get_form(s.form).length + 1) for s in specs) + 1
        cfg = GenerationConfig(strategy="sample", temperature=temperature, top_k=top_k,
                               max_len=max_len)
        out = generate(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                       eos_id=self.tok.eos_id, constraint=constraint, seeds=seeds)
        self.last_removed_mass = out.removed_mass
        results: list[list[dict]] = [[] for _ in jobs]
        for toks, score, j in sorted(zip(out.tokens, out.scores, owner), key=lambda x: -x[1]):
            theme, spec, n, _ = jobs[j]
            text = self.tok.decode(toks)
            if len(results[j]) < n and all(p["poem"] != text for p in results[j]):
                results[j].append({"theme": theme, "form": spec.form, "poem": text,
                                   "lines": split_poem(text), "score": round(score, 4)})
        return results

    def write(self, theme: str, form: str = "qijue", n: int = 1, acrostic: Optional[str] = None,
              start=None, rhyme: bool = True, tones: Optional[str] = None,
              temperature: float = 0.8, seed: Optional[int] = None, candidates: int = 3,
              rules: bool = True) -> list[dict]:
        """n poems on `theme`. Same seed, same poems. Raises ValueError on bad input."""
        n = check_n(n)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        theme, spec = self.request(theme, form, acrostic, start, rhyme, tones)
        seed = int(torch.randint(0, 2**31, (1,))) if seed is None else seed
        return self.generate([(theme, spec, n, derive_seed(seed, 0))], temperature,
                             candidates=candidates, rules=rules)[0]

    def stream(self, theme: str, form: str = "qijue", acrostic: Optional[str] = None,
               start=None, rhyme: bool = True, tones: Optional[str] = None,
               temperature: float = 0.8, seed: Optional[int] = None) -> Iterator[str]:
        """One poem, yielded as its growing text (for a live display)."""
        theme, spec = self.request(theme, form, acrostic, start, rhyme, tones)
        src, src_len = pad_batch([self._source(theme, spec.form)])
        f = get_form(spec.form)
        cfg = GenerationConfig(strategy="sample", temperature=temperature, top_k=TOP_K,
                               max_len=f.lines * (f.length + 1) + 1, seed=seed)
        ids: list[int] = []
        for step in stream(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                           eos_id=self.tok.eos_id,
                           constraint=PoemConstraint(self.tok, [spec], self.lines)):
            t = int(step.tokens[0])
            if t == self.tok.eos_id:
                break
            ids.append(t)
            yield self.tok.decode(ids)
