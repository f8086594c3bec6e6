"""The chat bot: a conversation so far -> the next reply, used by the CLI, batch runs and app.

    bot = Bot.load()                                   # data/models/chat
    bot.reply("hi! how was your weekend?", seed=1)     # -> the reply text
    bot.replies(["hi! how was your weekend?"], n=3)    # -> [{"reply", "score"}], best first
    bot.reply(["hi", "hello! how are you?", "good, you?"])   # multi-turn: the last turn is yours

The model sees the last two turns (chatbot/format.py). Replies are sampled (temperature,
top-p within the top 50) with a repetition penalty and no repeated 3-grams; `candidates` replies are decoded
together and the one with the best mean log-probability per piece is kept.
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

from .format import CONTEXT, MAX_SRC, MAX_TGT, SEP, source_text

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "data" / "models" / "chat"
MAX_N = 10               # replies per request
MAX_CHARS = 1000         # characters of one message kept (its end)


class _Forbid:
    """Constraint: never generate the turn separator, and do not end before the first piece."""

    def __init__(self, vocab: int, sep: int, eos: int):
        self.mask = torch.ones(vocab, dtype=torch.bool)
        self.mask[sep] = False
        self.first = self.mask.clone()
        self.first[eos] = False

    def begin(self, rows: torch.Tensor):
        self.n = len(rows)
        return self.first.expand(self.n, -1)

    def step(self, tokens: torch.Tensor):
        return self.mask.expand(self.n, -1)

    def reorder(self, index: torch.Tensor) -> None:
        self.n = len(index)


def clean_history(history) -> list[str]:
    """Validate a conversation (a list of turns, or one message); ValueError if unusable."""
    if isinstance(history, str):
        history = [history]
    if not isinstance(history, (list, tuple)) or not all(isinstance(t, str) for t in history):
        raise ValueError("a conversation is a list of messages (strings), the last one yours")
    turns = [" ".join(t.split()) for t in history]
    if not turns or not turns[-1]:
        raise ValueError("the message is empty; say something, e.g. 'hi, how are you?'")
    if any(not t for t in turns):
        raise ValueError("a conversation turn is empty")
    if len(turns[-1]) > MAX_CHARS:
        warnings.warn(f"the message was cut to its last {MAX_CHARS} characters")
        turns[-1] = turns[-1][-MAX_CHARS:]
    return turns[-CONTEXT:]


class Bot:
    def __init__(self, model, tokenizer, card: dict, fp16: bool = True):
        """`model` (fp32) scores text; replies are generated with fp16 decoder weights unless
        fp16=False (shared/fp16.py)."""
        self.model, self.tok, self.card = model.eval(), tokenizer, card
        self.decoder = for_generation(model, fp16)
        self.sep = tokenizer.special_id(SEP)

    @classmethod
    def load(cls, model_dir: str | Path = DEFAULT_DIR, fp16: bool = True) -> "Bot":
        model, tok, card = load_model(model_dir)
        return cls(model, tok, card, fp16)

    def _config(self, temperature: float, top_p: float) -> GenerationConfig:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        # top-p within the 50 likeliest pieces: the nucleus then needs no sort of all 8 k
        return GenerationConfig(strategy="sample", temperature=temperature, top_k=50,
                                top_p=top_p, repetition_penalty=1.2, no_repeat_ngram=3,
                                max_len=MAX_TGT + 1)

    def _rules(self) -> _Forbid:
        return _Forbid(self.tok.vocab_size, self.sep, self.tok.eos_id)

    def _source(self, turns: list[str]) -> list[int]:
        return self.tok.encode(source_text(turns))[-MAX_SRC:]

    def generate(self, jobs: Sequence[tuple[list[str], int, int]], temperature: float = 0.8,
                 top_p: float = 0.9, candidates: int = 3) -> list[list[dict]]:
        """jobs: (turns, n, seed) each, turns already cleaned. One batched decode for all
        candidates of all jobs. Returns, per job, its n best distinct replies."""
        cfg = self._config(temperature, top_p)
        rows, seeds, owner = [], [], []
        for j, (turns, n, seed) in enumerate(jobs):
            for c in range(n * candidates):
                rows.append(self._source(turns))
                seeds.append(derive_seed(seed, c))
                owner.append(j)
        src, src_len = pad_batch(rows)
        out = generate(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                       eos_id=self.tok.eos_id, constraint=self._rules(), seeds=seeds)
        results: list[list[dict]] = [[] for _ in jobs]
        for toks, score, j in sorted(zip(out.tokens, out.scores, owner), key=lambda x: -x[1]):
            text = self.tok.decode(toks).strip()
            n = jobs[j][1]
            if len(results[j]) < n and all(r["reply"] != text for r in results[j]):
                results[j].append({"reply": text, "score": round(score, 4)})
        return results

    def replies(self, history, n: int = 1, temperature: float = 0.8, top_p: float = 0.9,
                seed: Optional[int] = None, candidates: int = 3) -> list[dict]:
        """Up to n distinct next turns after `history` (one message, or a list of turns with
        the last one yours), best first: [{"reply", "score"}]. Same seed, same replies.
        Raises ValueError on bad input."""
        n = check_count(n, MAX_N, "replies")
        turns = clean_history(history)
        seed = int(torch.randint(0, 2**31, (1,))) if seed is None else seed
        return self.generate([(turns, n, derive_seed(seed, 0))], temperature, top_p,
                             candidates)[0]

    def reply(self, history, **kw) -> str:
        """The best next turn as text (options as for `replies`)."""
        return self.replies(history, 1, **kw)[0]["reply"]

    def stream(self, history, temperature: float = 0.8, top_p: float = 0.9,
               seed: Optional[int] = None) -> Iterator[str]:
        """One reply, yielded as its growing text (for a live display)."""
        turns = clean_history(history)
        cfg = self._config(temperature, top_p)
        cfg.seed = seed
        src, src_len = pad_batch([self._source(turns)])
        ids: list[int] = []
        for step in stream(self.decoder, src, src_len, cfg, bos_id=self.tok.bos_id,
                           eos_id=self.tok.eos_id,
                           constraint=self._rules()):
            t = int(step.tokens[0])
            if t == self.tok.eos_id:
                break
            ids.append(t)
            yield self.tok.decode(ids).strip()
