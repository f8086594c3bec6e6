"""Held-out evaluation of the shipped chat models (forward, backward, retrieval, re-ranker).

    python -m chatbot.evaluate [--json] [--contexts 300] [--model DIR] [--skip-ngram]
                               [--identity-seeds N]
    python -m chatbot.evaluate --tune       # also tune the re-ranking weights on validation and
                                            # write them into the model cards (each bot's own)

English (chitchat, chatterbot en) and Chinese (KdConv, chatterbot zh) test conversations are
reported separately; persona conversations are training-only.
* hits@1/20 (ConvAI2): each test context's true next turn among 19 true turns of other test
  contexts, ranked by the forward score log p(reply | context) / pieces, the backward score
  log p(message | reply) / pieces, the bot's combined score (both, plus the TF-IDF cosine), and
  the TF-IDF baseline alone (cosine of the candidate's and the message's piece counts, idf from
  training turns: ConvAI2's IR baseline).
* Perplexity per piece of the true reply with its true context and with a random other one;
  for each language, the model's and a modified Kneser-Ney 4-gram's on the same pieces.
* Replies of the default bot to `--contexts` test contexts per language: distinct-1/2 (words
  for English, characters for Chinese) beside the human replies', the generic-reply rate (equal,
  ignoring case and punctuation, to one of the 20 most frequent validation replies), the share
  retrieved, language match, mean length, speed; the same for the retrieval baseline (the reply
  after the most similar training message, as it is).
* Identity: the persona's held-out phrasings of "what is your name?" (data/persona/persona.json,
  never trained on) and whether the reply gives the bot's name; with `--identity-seeds N`,
  also over seeds 0..N-1 per phrasing. (`--tune` sets the fluency gate on the persona's other
  held-out phrasings, its validation ones.)
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import random
import re
import statistics
import time
from pathlib import Path

import torch

from shared import report as report_lib
from shared.cli import run_cli
from shared.ngram import KneserNey
from shared.trainer import evaluate

from . import data as chat_data
from .bot import Bot, is_chinese, teacher_forced
from .format import MAX_SRC, MAX_TGT, source_text
from .selector import CONTEXT as SELECTOR_CONTEXT
from .selector import selector_ids
from .train import pairs

CANDIDATES = 20
WEIGHTS = (0.0, 1.0, 2.0, 4.0, 6.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0)  # backward
OVERLAPS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)  # TF-IDF cosine, the same
SELECTORS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)       # the selector's logit


def examples(data: Path, split: str, lang: str) -> list[tuple[list[str], str]]:
    """(turns so far, the true next turn) of a split's conversations in one language."""
    return [(c["turns"][:i], c["turns"][i]) for c in chat_data.load_split(split, data)
            if c["lang"] == lang and c["source"] != "persona"
            for i in range(1, len(c["turns"]))]


def sample(items: list, n: int, seed: int = 0) -> list:
    return random.Random(seed).sample(items, min(n, len(items)))


# -- ranking ---------------------------------------------------------------------------------
def candidate_sets(exs, seed: int = 0) -> list[list[str]]:
    """Per example: its true reply first, then 19 true replies of other examples."""
    rng = random.Random(seed)
    replies = [r for _, r in exs]
    out = []
    for i, (_, true) in enumerate(exs):
        others = [r for r in rng.sample(replies, min(len(replies), CANDIDATES + 5)) if r != true]
        out.append([true] + others[:CANDIDATES - 1])
    return out


def pair_scores(model, tok, src_tgt: list[tuple[list[int], list[int]]],
                batch: int = 256) -> list[float]:
    out: list[float] = []
    for j in range(0, len(src_tgt), batch):
        out += teacher_forced(model, src_tgt[j:j + batch], tok.bos_id, tok.eos_id)
    return out


def ranking_scores(bot, exs, cands) -> dict[str, list[list[float]]]:
    """forward, backward and TF-IDF scores of every candidate of every example."""
    tok = bot.tok
    enc = {t: tok.encode(t)[:MAX_TGT] for cs in cands for t in cs}
    fwd_pairs = [(tok.encode(source_text(turns))[-MAX_SRC:], enc[c])
                 for (turns, _), cs in zip(exs, cands) for c in cs]
    f = pair_scores(bot.model, tok, fwd_pairs)
    b = [0.0] * len(f)
    if bot.backward is not None:
        b = pair_scores(bot.backward, tok, [(enc[c], tok.encode(turns[-1])[-MAX_TGT:])
                                            for (turns, _), cs in zip(exs, cands) for c in cs])
    tfidf = [bot.index.similarity(turns[-1], c) if bot.index is not None else 0.0
             for (turns, _), cs in zip(exs, cands) for c in cs]
    sel = [0.0] * len(f)
    if bot.critic is not None:
        context = bot.critic.about.get("context", SELECTOR_CONTEXT)
        flat = [selector_ids(tok, turns, c, context)
                for (turns, _), cs in zip(exs, cands) for c in cs]
        sel = bot.critic.match([c for c, _ in flat], [r for _, r in flat])
    ends = list(itertools.accumulate(len(cs) for cs in cands))   # a set may hold fewer than
                                                                  # CANDIDATES (few examples)
    def rows(xs):
        return [xs[e - len(cs):e] for e, cs in zip(ends, cands)]
    return {"forward": rows(f), "backward": rows(b), "tfidf": rows(tfidf),
            "selector": rows(sel)}


def _reply(bot, message, **kw) -> str:
    """The bot's reply, or "" where it writes none (an untrained model's empty candidates)."""
    try:
        return bot.reply(message, **kw)
    except ValueError:
        return ""


def hits_at_1(rows: list[list[float]]) -> float:
    """Share of examples whose true candidate (index 0) scores strictly best (examples with
    no other candidate do not count)."""
    rows = [r for r in rows if len(r) > 1]
    return round(sum(r[0] > max(r[1:]) for r in rows) / max(len(rows), 1), 4)


def combined(scores: dict, backward: float, overlap: float,
             selector: float = 0.0) -> list[list[float]]:
    """The bot's score (bot.rerank) of every candidate: retrieved-or-not is no feature here,
    every candidate being a true reply."""
    return [[f + backward * b + overlap * o + selector * s
             for f, b, o, s in zip(fr, br, orow, srow)]
            for fr, br, orow, srow in zip(scores["forward"], scores["backward"],
                                          scores["tfidf"], scores["selector"])]


def ranking(bot, exs) -> dict:
    scores = ranking_scores(bot, exs, candidate_sets(exs))
    w = bot.weights
    return {"examples": len(exs), "forward": hits_at_1(scores["forward"]),
            "backward": hits_at_1(scores["backward"]) if bot.backward is not None else None,
            "selector": hits_at_1(scores["selector"]) if bot.critic is not None else None,
            "combined": hits_at_1(combined(scores, w["backward"], w["overlap"],
                                           w["selector"] if bot.critic is not None else 0.0)),
            "combined_weights": {k: w[k] for k in ("backward", "overlap", "selector")},
            "tfidf_baseline": hits_at_1(scores["tfidf"])}


def tune(bot, data: Path, langs: tuple[str, ...] = ("en", "zh"), n: int = 400) -> dict:
    """The (backward, overlap, selector) weights with the best validation hits@1 over `langs` (pooled,
    each with negatives of its own language; ties go to the smaller weights)."""
    scores: dict[str, list] = {}
    count = 0
    for lang in langs:
        exs = sample(examples(data, "validation", lang), n)
        count += len(exs)
        for key, rows in ranking_scores(bot, exs, candidate_sets(exs, seed=1)).items():
            scores.setdefault(key, []).extend(rows)
    selectors = SELECTORS if bot.critic is not None else (0.0,)
    grid = {(b, o, s): hits_at_1(combined(scores, b, o, s))
            for b in WEIGHTS for o in OVERLAPS for s in selectors}
    best = max(grid, key=lambda k: (grid[k], -k[0], -k[1], -k[2]))
    return {"languages": list(langs), "validation_examples": count,
            "hits_at_1": {f"backward={b} overlap={o} selector={s}": h
                          for (b, o, s), h in grid.items()},
            "best": {"backward": best[0], "overlap": best[1], "selector": best[2]}}


GAPS = (None, 8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0)     # the fluency gate (Bot.fluent), widest first


def tune_gap(bot, data: Path, langs: tuple[str, ...], n: int = 100) -> dict:
    """The widest fluency gate (None: none) with which the most of the persona's validation
    questions (never trained on) get the bot's name. Beside each gate, for the reader, what it
    does to replies to `n` validation contexts a language (generic rate, share retrieved):
    those figures do not choose. A handful of questions a language choose, so one question
    can move the gate."""
    persona = chat_data.load_persona()
    generic = generic_set(data)
    asks = [(q, persona["name"][lang]) for lang in langs
            for q in persona.get("validation", {}).get(lang, [])]
    exs = [e for lang in langs for e in sample(examples(data, "validation", lang), n)]
    jobs = [(turns[-2:], 1, i) for i, (turns, _) in enumerate(exs)]
    table, named = {}, {}
    before = bot.weights.get("gap")
    try:
        for gap in GAPS:
            bot.weights["gap"] = gap
            named[gap] = sum(name.lower() in _reply(bot, q, seed=i).lower()
                             for i, (q, name) in enumerate(asks))
            none = {"reply": "", "source": "generated"}      # no candidate survived
            out = [r[0] if r else none for r in bot.generate(jobs)] if jobs else []
            table[str(gap)] = {
                "named": f"{named[gap]}/{len(asks)}",
                "generic_rate": round(sum(_norm(r["reply"]) in generic for r in out)
                                      / max(len(out), 1), 4),
                "retrieved_share": round(sum(r.get("source") == "retrieved" for r in out)
                                         / max(len(out), 1), 4)}
    finally:
        bot.weights["gap"] = before
    best = next(g for g in GAPS if named[g] == max(named.values()))
    bot.weights["gap"] = best
    return {"validation_questions": len(asks), "validation_contexts": len(exs),
            "by_gap": table, "best": best}


def tune_into_cards(bot, model_dir: Path, data: Path) -> dict:
    """Tune each bot's weights on its languages' validation and write them into its card:
    the joint bot on both languages, or, with a Chinese bot beside it, each on its own. The
    score's weights first (hits@1), then the fluency gate (tune_gap)."""
    plan = [(bot, ("en", "zh"), model_dir)] if bot.zh is None else \
        [(bot, ("en",), model_dir), (bot.zh, ("zh",), Bot.zh_dir(model_dir))]
    report = {}
    for b, langs, folder in plan:
        report[folder.name] = result = tune(b, data, langs)
        b.weights.update(result["best"])
        result["gap"] = tune_gap(b, data, langs)
        path = folder / "card.json"
        card = json.loads(path.read_text(encoding="utf-8"))
        card["rerank"] = {**b.weights, "tuning": result}
        path.write_text(json.dumps(card, indent=1, ensure_ascii=False), encoding="utf-8")
    return report


# -- perplexity --------------------------------------------------------------------------------
def perplexities(bot, data: Path) -> dict:
    """Forward-model perplexity per piece on each language's test pairs, with the true and a
    random context, beside a Kneser-Ney 4-gram (trained on all training pairs); Chinese pairs
    are scored by the Chinese bot's model where one is shipped."""
    tok = bot.tok
    train = pairs(chat_data.load_split("train", data), tok)
    kn = KneserNey(4, tok.vocab_size).fit([t for _, t in train], tok.bos_id, tok.eos_id,
                                          prefixes=[s for s, _ in train])
    out = {}
    for lang in ("en", "zh"):
        own = bot.for_lang(lang)               # the Chinese bot for Chinese, where shipped
        convs = [c for c in chat_data.load_split("test", data)
                 if c["lang"] == lang and c["source"] != "persona"]
        test = pairs(convs, tok)
        if not test:
            continue
        shuffled = [s for s, _ in test]
        random.Random(0).shuffle(shuffled)
        true = evaluate(own.model, test, bos=tok.bos_id, eos=tok.eos_id)
        rand = evaluate(own.model, [(s, t) for s, (_, t) in zip(shuffled, test)],
                        bos=tok.bos_id, eos=tok.eos_id)
        ngram = kn.score([t for _, t in test], tok.bos_id, tok.eos_id,
                         prefixes=[s for s, _ in test])
        out[f"{lang}_generation_ppl"] = evaluate(         # through what generation runs
            own.decoder, test, bos=tok.bos_id, eos=tok.eos_id, stepwise=True)["ppl"]
        out[lang] = {"pairs": len(test), "pieces": true["tokens"], "model_ppl": true["ppl"],
                     "random_context_ppl": rand["ppl"],
                     "true_to_random": round(true["ppl"] / rand["ppl"], 4),
                     "ngram4_ppl": ngram["ppl"],
                     "model_to_ngram": round(true["ppl"] / ngram["ppl"], 4)}
    return out


# -- replies -----------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def generic_set(data: Path, k: int = 20) -> set[str]:
    counts = collections.Counter(_norm(t) for c in chat_data.load_split("validation", data)
                                 for t in c["turns"][1:])
    return {t for t, _ in counts.most_common(k)}


def units(text: str, zh: bool) -> list[str]:
    return [c for c in text if not c.isspace()] if zh else text.lower().split()


def distinct(texts: list[str], zh: bool) -> tuple[float, float]:
    us = [units(t, zh) for t in texts]
    uni = [u for x in us for u in x]
    bi = [tuple(x[i:i + 2]) for x in us for i in range(len(x) - 1)]
    return (round(len(set(uni)) / max(len(uni), 1), 4), round(len(set(bi)) / max(len(bi), 1), 4))


def reply_stats(replies: list[str], exs, generic: set[str], zh: bool) -> dict:
    d1, d2 = distinct(replies, zh)
    return {"distinct_1": d1, "distinct_2": d2,
            "generic_rate": round(sum(_norm(r) in generic for r in replies) / len(replies), 4),
            "language_match": round(sum(is_chinese(r) == is_chinese(t[-1])
                                        for r, (t, _) in zip(replies, exs)) / len(replies), 4),
            "mean_units": round(statistics.fmean(len(units(r, zh)) for r in replies), 2)}


def replies(bot, exs, generic: set[str], zh: bool) -> dict:
    t0 = time.perf_counter()
    out = []
    for j in range(0, len(exs), 50):
        jobs = [(turns[-2:], 1, i) for i, (turns, _) in enumerate(exs[j:j + 50], j)]
        out += [r[0] for r in bot.generate(jobs)]
    dt = time.perf_counter() - t0
    texts = [r["reply"] for r in out]
    human = [true for _, true in exs]
    report = {"contexts": len(exs), "bot": reply_stats(texts, exs, generic, zh),
              "human": reply_stats(human, exs, generic, zh),
              "retrieved_share": round(sum(r.get("source") == "retrieved" for r in out)
                                       / len(out), 4),
              "replies_per_s": round(len(out) / dt, 2),
              "examples": [{"context": t[-2:], "reply": r, "human": h}
                           for (t, h), r in list(zip(exs, texts))[:8]]}
    index = bot.for_lang("zh" if zh else "en").index     # the index that language's bot reads
    if index is not None:
        base = [(index.search(t[-1], 1) or [("", 0.0)])[0][0] or "…" for t, _ in exs]
        report["retrieval_baseline"] = reply_stats(base, exs, generic, zh)
    report["bot"]["distinct_2_to_human"] = round(
        report["bot"]["distinct_2"] / max(report["human"]["distinct_2"], 1e-9), 4)
    return report


def identity(bot, seeds: int = 1) -> dict:
    """The held-out name phrasings, the i-th asked with seed i. With seeds > 1, also every
    phrasing asked with seeds 0..seeds-1 ("over_seeds": one sample per phrasing varies with the
    sampler): how many of the replies give the name, in all and per phrasing."""
    persona = chat_data.load_persona()
    out = {}
    for lang, phrasings in persona["evaluation"].items():
        name = persona["name"][lang]
        answers = [_reply(bot, q, seed=i) for i, q in enumerate(phrasings)]
        out[lang] = {"name": name, "answered_with_name": sum(name.lower() in a.lower()
                                                             for a in answers),
                     "asked": len(phrasings), "answers": answers}
        if seeds > 1:
            per = [sum(name.lower() in _reply(bot, q, seed=s).lower() for s in range(seeds))
                   for q in phrasings]
            out[lang]["over_seeds"] = {"seeds": seeds, "named": sum(per),
                                       "asked": len(phrasings) * seeds, "per_phrasing": per}
    return out


SPEED_MESSAGES = {"en": "hi! how was your weekend?", "zh": "你好！周末过得怎么样？"}


def speed(bot, runs: int = 21) -> dict:
    """p50 of one reply at batch 1 with everything (sampled candidates, retrieval, re-ranking;
    first call dropped), for a message in each language (the Chinese one is answered by the
    Chinese bot where one is shipped)."""
    out = {}
    for lang, message in SPEED_MESSAGES.items():
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            _reply(bot, [message], seed=i)
            times.append(time.perf_counter() - t0)
        out[f"{lang}_reply_p50_ms_batch1"] = round(1000 * statistics.median(times[1:]), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chatbot.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--contexts", type=int, default=300, help="test contexts per language")
    ap.add_argument("--ranking", type=int, default=500, help="hits@1 examples per language")
    ap.add_argument("--model", help="model folder (default data/models/chat)")
    ap.add_argument("--data", default=str(chat_data.OUT))
    ap.add_argument("--skip-ngram", action="store_true", help="skip the perplexities")
    ap.add_argument("--identity-seeds", type=int, default=1, metavar="N",
                    help="N > 1: also ask every held-out name phrasing with seeds 0..N-1 "
                         "(identity.<lang>.over_seeds)")
    ap.add_argument("--tune", action="store_true",
                    help="tune the re-ranking weights on validation and write them into the "
                         "cards (chat's, and chat-zh's for the Chinese bot)")
    report_lib.add_option(ap)
    args = ap.parse_args(argv)
    if args.identity_seeds < 1:
        ap.error(f"--identity-seeds must be at least 1, not {args.identity_seeds}")
    data = Path(args.data)
    bot = Bot.load(args.model)
    report: dict = {"task": "chat", "model": str(args.model or Bot.default_dir()),
                    "threads": torch.get_num_threads(), "generation": bot.precision}
    if args.tune:
        report["tuning"] = tune_into_cards(bot, Path(args.model or Bot.default_dir()), data)
    if not args.skip_ngram:
        report["perplexity"] = perplexities(bot, data)
    generic = generic_set(data)
    for lang in ("en", "zh"):
        test = examples(data, "test", lang)
        if not test:
            continue
        report[f"ranking_{lang}"] = ranking(bot.for_lang(lang), sample(test, args.ranking))
        report[f"replies_{lang}"] = replies(bot, sample(test, args.contexts, seed=2), generic,
                                            zh=lang == "zh")
    report["identity"] = identity(bot, args.identity_seeds)
    report["speed"] = speed(bot)
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 1))
    if args.report:
        report_lib.write(report, report_lib.command_line("python -m chatbot.evaluate", argv),
                         args.report)
    return 0


if __name__ == "__main__":
    run_cli(main)
