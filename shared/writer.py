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
* `stream_job` decodes and ranks the job as `generate` does, then yields the winner's text as
  it grows, a token at a time: every yield is a start of that text and the last is all of it,
  so what streams is what `write` returns first for the same request and seed;
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
from .decoding import GenerationConfig, derive_seed, generate, pad_batch
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
            writer.set_critic(critic_files.load(model_dir, model.cfg.tgt_vocab))
        return writer

    def set_critic(self, critic) -> None:
        """The critic the ranking reads (None: none)."""
        self.critic = critic

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
        """The text of `generate([job])[0][0]` as it grows, for a caller that shows it as it
        comes; the generator returns `generate([job])[0]` itself (`results = yield from ...`),
        so a caller that streams need not decode again, and yields nothing where the job has
        no result.

        The job is decoded and ranked whole before the first yield: the ranking reads whole
        candidates (the critic, a task's own `rank_score`, and `finalize`, where chat adds
        retrieved replies and a backward model's score), so no candidate is known to win while
        they are written. Then the winner's text is yielded a token at a time: each yield is a
        start of it, longer than the one before (a token that decodes to no start of it, such
        as half a character, waits for the next), and the last is the text itself. No yield
        is ever taken back for another text."""
        results = self.generate([job], temperature, candidates, rules, **options)[0]
        if not results:
            return results
        text = results[0][self.TEXT]
        ids, shown = self.tok.encode(text), 0
        for k in range(1, len(ids)):
            part = self.text(ids[:k])
            if shown < len(part) < len(text) and text.startswith(part):
                shown = len(part)
                yield part
        yield text
        return results
