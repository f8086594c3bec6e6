"""The chat bot: a conversation so far -> the next reply, used by the CLI, batch runs and app.

    bot = Bot.load()                                   # data/models/chat
    bot.reply("hi! how was your weekend?", seed=1)     # -> the reply text
    bot.replies(["hi! how was your weekend?"], n=3)    # -> [{"reply", "score"}], best first
    bot.reply(["hi", "hello! how are you?", "good, you?"])   # multi-turn: the last turn is yours

The model sees the last two turns (chatbot/format.py). Replies are sampled (temperature,
top-p within the top 50) with a repetition penalty and no repeated 3-grams; `candidates`
replies are decoded together and the one with the best mean log-probability per piece is kept
(shared/writer.py).
"""
from __future__ import annotations

import warnings
from typing import Iterator, Optional, Sequence

from shared.decoding import GenerationConfig, derive_seed
from shared.rules import AllOf, ForbidTokens, MinLength
from shared.writer import Writer

from .format import CONTEXT, MAX_SRC, MAX_TGT, SEP, source_text

MAX_N = 10               # replies per request
MAX_CHARS = 1000         # characters of one message kept (its end)


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


class Bot(Writer):
    MODEL, MAX_N, WHAT, TEXT = "chat", MAX_N, "replies", "reply"
    TEMPERATURE, CANDIDATES = 0.8, 3
    TOP_P = 0.9

    # -- what the shared writer needs (a request is the cleaned list of turns) ---------------
    def source(self, turns: list[str]) -> list[int]:
        return self.tok.encode(source_text(turns))[-MAX_SRC:]

    def rules(self, reqs: Sequence, on: bool):
        # a reply never holds the turn separator, and is never empty
        return AllOf([ForbidTokens(self.tok.vocab_size, [self.tok.special_id(SEP)]),
                      MinLength(self.tok.vocab_size, self.tok.eos_id, 1)])

    def settings(self, reqs: Sequence, temperature: float,
                 top_p: float = TOP_P) -> GenerationConfig:
        # top-p within the 50 likeliest pieces: the nucleus then needs no sort of all 8 k
        return GenerationConfig(strategy="sample", temperature=temperature, top_k=50,
                                top_p=top_p, repetition_penalty=1.2, no_repeat_ngram=3,
                                max_len=MAX_TGT + 1)

    def text(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens).strip()

    def result(self, turns: list[str], text: str, score: float, rank: int) -> dict:
        return {"reply": text, "score": round(score, 4)}

    # -- the API -------------------------------------------------------------------------
    def replies(self, history, n: int = 1, temperature: float = TEMPERATURE,
                top_p: float = TOP_P, seed: Optional[int] = None,
                candidates: int = CANDIDATES) -> list[dict]:
        """Up to n distinct next turns after `history` (one message, or a list of turns with
        the last one yours), best first: [{"reply", "score"}]. Same seed, same replies.
        Raises ValueError on bad input."""
        n = self.check_n(n)
        job = (clean_history(history), n, derive_seed(self.seed(seed), 0))
        return self.generate([job], temperature, candidates, top_p=top_p)[0]

    def reply(self, history, **kw) -> str:
        """The best next turn as text (options as for `replies`)."""
        return self.replies(history, 1, **kw)[0]["reply"]

    def stream(self, history, temperature: float = TEMPERATURE, top_p: float = TOP_P,
               seed: Optional[int] = None, candidates: int = CANDIDATES) -> Iterator[str]:
        """The reply `reply` gives for the same conversation and seed, yielded as its growing
        text (the leading candidate's, while they are written)."""
        job = (clean_history(history), 1, derive_seed(self.seed(seed), 0))
        yield from self.stream_job(job, temperature, candidates, top_p=top_p)
