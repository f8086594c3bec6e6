"""The writer layer every task shares: a loaded model (card-checked) that turns validated
requests into results, used by the CLIs, batch runs, evaluation and the app.

A task's writer (`PoemWriter`, `TuneWriter`, `Bot`) subclasses `Writer` and supplies only:
its request checking (public `write`-style methods that build request objects), the source ids
of a request, its rules (a `Constraint`, see shared/rules.py), the decoding settings, and how
decoded text becomes a result. Everything else is here, once:

* a job is (request, n, seed); each job decodes `n * candidates` rows in one batched call,
  row c of a job seeded with derive_seed(seed, c), and keeps the n best distinct results by
  `rank_score` (mean log-prob per token unless the task adds to it), plus `critic_weight` x
  the logit of the critic beside the model where it has one (shared/critic.py);
* `stream` decodes the very same rows and yields the text of the currently best candidate,
  so its last yield is exactly what `write` returns first for the same request and seed;
* a request without a seed gets a random one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Optional, Sequence

import torch

from . import critic as critic_files
from .checkpoint import load_model
from .cli import check_count, check_flag
from .decoding import Collector, GenerationConfig, derive_seed, generate, pad_batch, stream
from .fp16 import for_generation

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
MAX_CANDIDATES = 32     # candidates per wanted result: each is a decoded row
Job = tuple[Any, int, int]          # (request, n, seed)


@dataclass
class Outcome:
    results: list[list[dict]]       # per job, its n best distinct results
    removed_mass: float             # mean probability mass per step the rules removed


class Writer:
    """Subclasses set MODEL (folder name under data/models), MAX_N, WHAT (plural noun),
    TEXT (the result field that holds the text), TEMPERATURE and CANDIDATES, and implement
    `source`, `rules`, `settings` and `result`."""

    MODEL = ""
    MAX_N = 10
    WHAT = "results"
    TEXT = "text"
    TEMPERATURE = 0.8
    CANDIDATES = 3
    CRITIC_WEIGHT = 0.0     # a task's weight of its critic's logit in the ranking

    def __init__(self, model, tokenizer, card: dict, precision: str = "auto"):
        """`model` (fp32) scores text; generation runs the decoder weights of `precision`:
        "auto" (measured on this machine, shared/fp16.py), "fp16", "bf16" or "fp32"."""
        self.model, self.tok, self.card = model.eval(), tokenizer, card
        self.decoder, self.precision = for_generation(model, precision, self.CANDIDATES)
        self.critic, self.critic_weight = None, self.CRITIC_WEIGHT

    @classmethod
    def default_dir(cls) -> Path:
        return MODELS / cls.MODEL

    @classmethod
    def load(cls, model_dir: str | Path | None = None, precision: str = "auto",
             critic: bool = True, **options):
        """The model in `model_dir` (default data/models/<MODEL>), with the critic beside it
        where there is one (`critic=False`: without); `options` go to `extras`."""
        model_dir = Path(model_dir or cls.default_dir())
        model, tok, card = load_model(model_dir)
        writer = cls(model, tok, card, precision=precision, **cls.extras(model_dir, **options))
        if check_flag(critic, "critic"):
            writer.critic = critic_files.load(model_dir, model.cfg.tgt_vocab)
        return writer

    @classmethod
    def extras(cls, model_dir: Path, **options) -> dict:
        """Task files shipped beside the model, as keyword arguments of the constructor."""
        if options:
            raise TypeError(f"unknown options {sorted(options)}")
        return {}

    # -- what a task supplies ----------------------------------------------------------------
    def source(self, request) -> list[int]:
        raise NotImplementedError

    def rules(self, requests: Sequence, on: bool):
        """A Constraint for rows decoding `requests` (row i decodes requests[i]), or None."""
        return None

    def settings(self, requests: Sequence, temperature: float, **options) -> GenerationConfig:
        raise NotImplementedError

    def text(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens)

    def result(self, request, text: str, score: float, rank: int) -> dict:
        """The result dict for decoded `text`; rank = its place among the job's results."""
        raise NotImplementedError

    def candidate(self, request, seed: int):
        """The request one candidate row decodes (seeded `seed`): by default the request
        itself; a task may vary it per candidate (poems sample their keywords here)."""
        return request

    def critic_ids(self, request, text: str) -> list[int]:
        """What the critic reads for a candidate: by default its text's ids."""
        return self.tok.encode(text)

    def rank_score(self, request, text: str, score: float) -> float:
        """What candidates are ranked by (higher is better): by default the model's mean
        log-prob per token; a task may add its own preferences (the result keeps `score`)."""
        return score

    # -- shared ------------------------------------------------------------------------------
    def check_n(self, n) -> int:
        return check_count(n, self.MAX_N, self.WHAT)

    @staticmethod
    def seed(seed: Optional[int]) -> int:
        """A request's seed: the given whole number, else a random one."""
        if seed is None:
            return int(torch.randint(0, 2**31, (1,)))
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"the seed must be a whole number, got {seed!r}")
        return seed

    def _plan(self, jobs: Sequence[Job], candidates: int):
        if not isinstance(candidates, int) or isinstance(candidates, bool) or \
                not 1 <= candidates <= MAX_CANDIDATES:
            raise ValueError(f"candidates must be a whole number from 1 to {MAX_CANDIDATES}, "
                             f"got {candidates!r}")
        reqs, seeds, owner = [], [], []
        for j, (req, n, seed) in enumerate(jobs):
            for c in range(n * candidates):
                seeds.append(derive_seed(seed, c))
                reqs.append(self.candidate(req, seeds[-1]))
                owner.append(j)
        return reqs, seeds, owner

    def _inputs(self, reqs, temperature, rules, options):
        check_flag(rules, "rules")
        src, src_len = pad_batch([self.source(r) for r in reqs])
        cfg = self.settings(reqs, self.TEMPERATURE if temperature is None else temperature,
                            **options)
        cfg.validate()
        return src, src_len, cfg, self.rules(reqs, rules)

    def finalize(self, jobs, reqs, owner, tokens, scores) -> list[list[dict]]:
        """Per job, its results from the decoded rows (row r decodes reqs[r] for job owner[r]):
        by default the n best distinct by `rank_score`. A task may re-rank here
        (chat adds retrieved replies and a second model's score)."""
        return self._rank(jobs, reqs, owner, tokens, scores)

    def _rank(self, jobs, reqs, owner, tokens, scores) -> list[list[dict]]:
        """Per job, its n best distinct results (by `rank_score`)."""
        results: list[list[dict]] = [[] for _ in jobs]
        seen: list[set] = [set() for _ in jobs]
        texts = [self.text(t) for t in tokens]
        ranked = [self.rank_score(q, x, s) for q, x, s in zip(reqs, texts, scores)]
        if self.critic is not None and self.critic_weight:
            logits = self.critic.score([self.critic_ids(q, x) for q, x in zip(reqs, texts)])
            ranked = [r + self.critic_weight * c for r, c in zip(ranked, logits)]
        for r in sorted(range(len(reqs)), key=lambda r: -ranked[r]):
            j = owner[r]
            text = texts[r]
            if len(results[j]) < jobs[j][1] and text not in seen[j]:
                seen[j].add(text)
                results[j].append(self.result(reqs[r], text, scores[r], len(results[j])))
        return results

    def run(self, jobs: Sequence[Job], temperature: Optional[float] = None,
            candidates: Optional[int] = None, rules: bool = True, **options) -> Outcome:
        """Decode every job in one batched call."""
        reqs, seeds, owner = self._plan(jobs, self.CANDIDATES if candidates is None
                                        else candidates)
        if not reqs:
            return Outcome([[] for _ in jobs], 0.0)
        src, src_len, cfg, constraint = self._inputs(reqs, temperature, rules, options)
        with torch.inference_mode():
            out = generate(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                           eos_id=self.tok.eos_id, pad_id=self.tok.pad_id,
                           constraint=constraint, seeds=seeds)
        return Outcome(self.finalize(jobs, reqs, owner, out.tokens, out.scores),
                       out.removed_mass)

    def generate(self, jobs: Sequence[Job], temperature: Optional[float] = None,
                 candidates: Optional[int] = None, rules: bool = True,
                 **options) -> list[list[dict]]:
        """jobs: (request, n, seed) each -> per job, its n best distinct results."""
        return self.run(jobs, temperature, candidates, rules, **options).results

    def stream_job(self, job: Job, temperature: Optional[float] = None,
                   candidates: Optional[int] = None, rules: bool = True,
                   **options) -> Generator[str, None, list[dict]]:
        """The growing text of the job's currently best candidate, whenever it changes; the
        last yield is the text of `generate([job])[0][0]`, and the generator returns
        `generate([job])[0]` itself (`results = yield from ...`), so a caller that streams
        need not decode again. (The lead may pass to another candidate on the way, so a yield
        need not extend the one before.)"""
        jobs = [job]
        reqs, seeds, owner = self._plan(jobs, self.CANDIDATES if candidates is None
                                        else candidates)
        if not reqs:
            return []
        src, src_len, cfg, constraint = self._inputs(reqs, temperature, rules, options)
        acc = Collector(len(reqs), self.tok.eos_id, self.tok.pad_id)
        steps = stream(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                       eos_id=self.tok.eos_id, pad_id=self.tok.pad_id,
                       constraint=constraint, seeds=seeds)
        shown = None
        while True:
            # Inference mode is per thread and a caller may resume this generator in another
            # thread (Gradio does): hold it for one step at a time, never across a yield.
            with torch.inference_mode():
                step = next(steps, None)
                if step is None:
                    break
                acc.add(step)
                scores = acc.scores()
                texts = [self.text(t) for t in acc.tokens]
                best = max(range(len(reqs)),
                           key=lambda r: self.rank_score(reqs[r], texts[r], scores[r]))
                text = texts[best]
            if text != shown:
                shown = text
                yield text
        final = self.finalize(jobs, reqs, owner, acc.tokens, acc.scores())[0]
        if final and final[0][self.TEXT] != shown:
            yield final[0][self.TEXT]
        return final
