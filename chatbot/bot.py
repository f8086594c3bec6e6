"""The chat bot: a conversation so far -> the next reply, used by the CLI, batch runs and app.

    bot = Bot.load()                                   # data/models/chat
    bot.reply("hi! how was your weekend?", seed=1)     # -> the reply text
    bot.replies(["hi! how was your weekend?"], n=3)    # -> [{"reply", "score"}], best first
    bot.reply(["hi", "hello! how are you?", "good, you?"])   # multi-turn: the last turn is yours

The model sees the last two turns (chatbot/format.py). Candidates: `candidates` replies
sampled together (temperature, top-p within the top 50, a repetition penalty, no repeated
3-grams; shared/writer.py) plus the replies that followed the RETRIEVED most similar training
messages (BM25, chatbot/retrieval.py). All are re-ranked by

    log p(reply | context) / pieces  +  backward * log p(message | reply) / pieces
                                     +  overlap * tfidf_cosine(message, reply)

(the forward model and the backward model of chatbot/train.py; Li et al. 2016's MMI re-ranking,
which favours replies that say something about the message over generic ones; the TF-IDF
cosine of retrieval.py, ConvAI2's IR baseline), with the weights tuned on validation
(`python -m chatbot.evaluate --tune` writes them into the card's "rerank"), plus, where the
chat folder has one, `selector` x the logit of the reply selector (chatbot/selector.py: the
core's critic reading the last turns and the candidate, trained to tell the reply that
followed from others). Candidates in the
other language than the message are dropped when any in its language exist, and so are
retrieved replies that the forward model finds far less likely than the best generated one
(`Bot.fluent`: the "gap", tuned on the persona's validation questions). Each reply records
where it came from: "source" is "generated" or "retrieved". Without the backward model and
index (a bare model folder), replies rank by the forward score alone.

Chinese messages go to a Chinese bot where one is shipped beside the model (data/models/chat-zh:
a larger forward model trained from scratch on the Chinese conversations alone, with the
English model's tokenizer; chat-zh-backward: the joint pair's backward model fine-tuned on
them; its own index, of the Chinese registry pairs, where it has one). Its re-ranking weights
are its own card's (tuned on Chinese validation), else this bot's.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence


from shared.checkpoint import load_model
from shared.cli import check_text
from shared.decoding import GenerationConfig, derive_seed, pad_batch
from shared.rules import AllOf, ForbidTokens, MinLength
from shared.writer import Outcome, Writer

from .format import CONTEXT, MAX_SRC, MAX_TGT, SEP, fullwidth, source_text
from .retrieval import Retrieval
from .selector import CONTEXT as SELECTOR_CONTEXT
from .selector import selector_ids

MAX_N = 10               # replies per request
MAX_CHARS = 1000         # characters of one message kept (its end)
RETRIEVED = 30           # retrieved candidates per request
RERANK = {"backward": 0.5, "overlap": 0.0, "retrieved": 0.0,   # until the card's "rerank"
          "gap": None, "selector": 0.0}                        # (tuned on validation) says


def is_chinese(text: str) -> bool:
    """Mostly CJK characters (among letters and CJK): the message's language, for replies."""
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in text)
    latin = sum(c.isascii() and c.isalpha() for c in text)
    return cjk > 0 and cjk >= latin / 4


ROLES = ("user", "assistant")


def from_messages(messages) -> list[str]:
    """Chat tools' format, [{"role": "user"|"assistant", "content": "..."}, ...] (system
    messages are skipped), as a list of turns. ValueError says what is wrong."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {role, content} objects")
    turns, roles = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} is not a {{\"role\", \"content\"}} object")
        if m["role"] == "system":
            continue
        if m["role"] not in ROLES:
            raise ValueError(f"message {i} has role {m['role']!r}; use user or assistant")
        if not isinstance(m["content"], str):
            raise ValueError(f"message {i}'s content is not a string")
        turns.append(m["content"])
        roles.append(m["role"])
    if not roles or roles[-1] != "user":
        raise ValueError("the last message must be the user's")
    return turns


def clean_history(history) -> list[str]:
    """Validate a conversation: one message, a list of turns (the last one yours), or chat
    messages ({"messages": [...]} or the list itself); ValueError if unusable."""
    if isinstance(history, str):
        history = [history]
    if isinstance(history, dict):
        if "messages" not in history:
            raise ValueError("a conversation object needs a 'messages' list")
        history = from_messages(history["messages"])
    elif isinstance(history, (list, tuple)) and history and all(
            isinstance(t, dict) for t in history):
        history = from_messages(history)
    if not isinstance(history, (list, tuple)) or not all(isinstance(t, str) for t in history):
        raise ValueError("a conversation is a list of messages (strings), the last one yours")
    for i, t in enumerate(history):
        check_text(t, "the message" if i == len(history) - 1 else f"turn {i + 1}")
    turns = [" ".join(t.split()) for t in history]
    if not turns or not turns[-1]:
        raise ValueError("the message is empty; say something, e.g. 'hi, how are you?'")
    if any(not t for t in turns):
        raise ValueError("a conversation turn is empty")
    if len(turns[-1]) > MAX_CHARS:
        warnings.warn(f"the message was cut to its last {MAX_CHARS} characters")
        turns[-1] = turns[-1][-MAX_CHARS:]
    return turns[-CONTEXT:]


def teacher_forced(model, pairs: Sequence[tuple[list[int], list[int]]], bos: int, eos: int
                   ) -> list[float]:
    """Mean log-prob per target piece (its <eos> included) of each (source, target) pair."""
    src, src_len = pad_batch([s for s, _ in pairs])
    tgt_in, _ = pad_batch([[bos] + list(t) for _, t in pairs])
    tgt_out, _ = pad_batch([list(t) + [eos] for _, t in pairs])
    total, count = model.sequence_logprob(src, src_len, tgt_in, tgt_out)
    return (total / count.clamp(min=1)).tolist()


class Bot(Writer):
    MODEL, MAX_N, WHAT, TEXT = "chat", MAX_N, "replies", "reply"
    # sampled per wanted reply, then re-ranked. 0.5: a blind read of Chinese replies found 51.7 %
    # sensible at 0.5 against 35 % at 0.8 (13 of 60 contexts better, 3 worse); English was
    # level (50 % against 48.3 %); README, Chat
    TEMPERATURE, CANDIDATES = 0.5, 8
    TOP_P = 0.9

    def __init__(self, model, tokenizer, card: dict, backward=None,
                 index: Optional[Path] = None, precision: str = "auto",
                 zh: Optional[Path] = None):
        """`backward`: the p(message | reply) model; `index`: retrieval.npz; `zh`: the folder
        of the Chinese bot's forward model (its backward model beside it). The weights of the
        combined score come from the card ("rerank", written by `chatbot.evaluate --tune`)."""
        super().__init__(model, tokenizer, card, precision)
        self.backward = backward
        self.index = Retrieval.load(index, tokenizer) if index else None
        self.weights = {**RERANK, **{k: v for k, v in (card.get("rerank") or {}).items()
                                     if k in RERANK}}
        self.zh: Optional[Bot] = None
        if zh is not None:
            zh_model, zh_tok, zh_card = load_model(zh)
            if zh_tok.fingerprint() != tokenizer.fingerprint():
                raise ValueError(f"{zh} has another tokenizer than the chat model beside it")
            own = self.extras(zh, languages=False)
            self.zh = Bot(zh_model, zh_tok, zh_card, precision=precision, index=own["index"],
                          backward=own["backward"] or backward)
            if self.zh.index is None:
                self.zh.index = self.index
            if not zh_card.get("rerank"):       # not tuned on its own: this bot's weights
                self.zh.weights = dict(self.weights)

    @classmethod
    def extras(cls, model_dir: Path, rerank: bool = True, languages: bool = True) -> dict:
        """The backward model (data/models/chat-backward beside chat), the retrieval index
        and the Chinese bot's folder (chat-zh), where they exist (rerank=False: the forward
        model alone; languages=False: one bot for every language). A sibling folder that is
        absent is left out; one that is there is loaded, so a damaged or emptied one is a
        ModelFileError naming its file rather than a quietly worse bot."""
        back = model_dir.parent / f"{model_dir.name}-backward"
        zh = cls.zh_dir(model_dir)
        index = model_dir / "retrieval.npz"
        return {"backward": load_model(back)[0] if rerank and back.is_dir() else None,
                "index": index if rerank and index.exists() else None,
                "zh": zh if rerank and languages and zh.is_dir() else None}

    @staticmethod
    def zh_dir(model_dir: Path) -> Path:
        """Where the Chinese bot's forward model lies beside a chat model (chat -> chat-zh)."""
        return model_dir.parent / f"{model_dir.name}-zh"

    def set_critic(self, critic) -> None:
        """The reply selector, for this bot and the Chinese one beside it."""
        self.critic = critic
        if self.zh is not None:
            self.zh.critic = critic

    def for_lang(self, lang: str) -> "Bot":
        """The bot that answers messages in `lang` ("en" or "zh")."""
        return self.zh if lang == "zh" and self.zh is not None else self

    def for_turns(self, turns: Sequence[str]) -> "Bot":
        """The bot that answers this conversation: by its last message's language."""
        return self.for_lang("zh" if turns and is_chinese(turns[-1]) else "en")

    def run(self, jobs, temperature=None, candidates=None, rules=True, **options) -> Outcome:
        """As `Writer.run`, with each job decoded by the bot of its message's language."""
        zh = {j for j, (turns, _, _) in enumerate(jobs)
              if self.zh is not None and self.for_turns(turns) is not self}
        if not zh:
            return super().run(jobs, temperature, candidates, rules, **options)
        results: list = [None] * len(jobs)
        removed = 0.0
        for bot, js in ((self, [j for j in range(len(jobs)) if j not in zh]),
                        (self.zh, sorted(zh))):
            if js:
                run = super().run if bot is self else bot.run
                part = run([jobs[j] for j in js], temperature, candidates, rules, **options)
                for j, r in zip(js, part.results):
                    results[j] = r
                removed += part.removed_mass * len(js) / len(jobs)   # by jobs (approximate:
                                                                     # not by decoded rows)
        return Outcome(results, removed)

    def stream_job(self, job, temperature=None, candidates=None, rules=True, **options):
        bot = self.for_turns(job[0])
        stream = super().stream_job if bot is self else bot.stream_job
        return (yield from stream(job, temperature, candidates, rules, **options))

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
        return fullwidth(self.tok.decode(tokens).strip())

    def result(self, turns: list[str], text: str, score: float, rank: int) -> dict:
        return {"reply": text, "score": round(score, 4), "source": "generated"}

    # -- re-ranking ----------------------------------------------------------------------------
    def finalize(self, jobs, reqs, owner, tokens, scores) -> list[list[dict]]:
        if self.backward is None and self.index is None:
            return self._rank(jobs, reqs, owner, tokens, scores)
        pools: list[dict[str, str]] = [{} for _ in jobs]          # text -> source
        for r, j in enumerate(owner):
            text = self.text(tokens[r])
            if text:
                pools[j].setdefault(text, "generated")
        for j, (turns, n, _) in enumerate(jobs):
            if self.index is not None:
                for text, _ in self.index.search(turns[-1], RETRIEVED):
                    pools[j].setdefault(fullwidth(text), "retrieved")
            zh = is_chinese(turns[-1])
            same = {t: s for t, s in pools[j].items() if is_chinese(t) == zh}
            pools[j] = same or pools[j]
        return [self.rerank(turns, pool, n) for (turns, n, _), pool in zip(jobs, pools)]

    def rerank(self, turns: list[str], pool: dict[str, str], n: int) -> list[dict]:
        """The n best of `pool` (text -> source) after `turns` by the combined score."""
        texts = list(pool)
        if not texts:
            return []
        bos, eos = self.tok.bos_id, self.tok.eos_id
        replies = [self.tok.encode(t)[:MAX_TGT] for t in texts]
        forward = teacher_forced(self.model, [(self.source(turns), r) for r in replies], bos, eos)
        w = self.weights
        backward = [0.0] * len(texts)
        if self.backward is not None:
            message = self.tok.encode(turns[-1])[-MAX_TGT:]
            backward = teacher_forced(self.backward, [(r, message) for r in replies], bos, eos)
        overlap = [self.index.similarity(turns[-1], t) if self.index is not None else 0.0
                   for t in texts]
        keep = self.fluent(texts, forward, pool)
        selector = [0.0] * len(texts)
        if self.critic is not None and w["selector"]:
            context = self.critic.about.get("context", SELECTOR_CONTEXT)
            pairs = [selector_ids(self.tok, turns, t, context) for t in texts]
            selector = self.critic.match([c for c, _ in pairs], [r for _, r in pairs])
        out = [{"reply": t, "score": round(f + w["backward"] * b + w["overlap"] * o
                                             + w["retrieved"] * (pool[t] == "retrieved")
                                             + w["selector"] * s, 4),
                "source": pool[t], "forward": round(f, 4), "backward": round(b, 4),
                "overlap": round(o, 4), "selector": round(s, 4)}
               for t, f, b, o, s, k in zip(texts, forward, backward, overlap, selector, keep)
               if k]
        return sorted(out, key=lambda x: -x["score"])[:n]

    def fluent(self, texts: list[str], forward: list[float], pool: dict[str, str]) -> list[bool]:
        """The fluency gate: a retrieved reply stays only if the forward model finds it at
        most `gap` nats a piece less likely after this context than the best generated one
        (a human reply to another conversation can read well and still not answer this one;
        the backward score alone lets such replies win). gap None: no gate."""
        gap = self.weights.get("gap")
        generated = [f for t, f in zip(texts, forward) if pool[t] == "generated"]
        if gap is None or not generated:
            return [True] * len(texts)
        floor = max(generated) - gap
        return [pool[t] != "retrieved" or f >= floor for t, f in zip(texts, forward)]

    # -- the API -------------------------------------------------------------------------
    def replies(self, history, n: int = 1, temperature: Optional[float] = None,
                top_p: float = TOP_P, seed: Optional[int] = None,
                candidates: int = CANDIDATES) -> list[dict]:
        """Up to n distinct next turns after `history` (one message, or a list of turns with
        the last one yours), best first: [{"reply", "score", "source", ...}]. Same seed, same
        replies. temperature None: the bot's own (TEMPERATURE). Raises ValueError on bad
        input."""
        n = self.check_n(n)
        job = (clean_history(history), n, derive_seed(self.seed(seed), 0))
        return self.generate([job], temperature, candidates, top_p=top_p)[0]

    def reply(self, history, **kw) -> str:
        """The best next turn as text (options as for `replies`); ValueError if no candidate
        survives (every one empty, as an untrained model may write)."""
        out = self.replies(history, 1, **kw)
        if not out:
            raise ValueError("no reply could be written for this conversation")
        return out[0]["reply"]

    def stream(self, history, temperature: Optional[float] = None, top_p: float = TOP_P,
               seed: Optional[int] = None, candidates: int = CANDIDATES) -> Iterator[str]:
        """The reply `reply` gives for the same conversation and seed, yielded as its growing
        text once it is chosen (every candidate is decoded and ranked first)."""
        job = (clean_history(history), 1, derive_seed(self.seed(seed), 0))
        yield from self.stream_job(job, temperature, candidates, top_p=top_p)
