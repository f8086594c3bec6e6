"""Held-out evaluation of the shipped chat model.

    python -m chatbot.evaluate [--json] [--contexts 200] [--model DIR] [--skip-ngram]

Perplexity per SentencePiece piece (the reply's pieces and its <eos>) on the test split's
(context -> next turn) pairs, for the model (teacher-forced fp32, and step by step through the
fp16 decoder that generation runs) and for a modified Kneser-Ney n-gram over the same pieces
(order tuned on validation, the context as its history prefix). Then replies to test contexts
with the default settings: distinct-1/2 (unique word uni-/bigrams over all reply words), mean
length, echo rate (the reply repeats the message), the share of the most common reply, and
speed (one reply p50 at batch 1, replies/s in batches of 50).
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import random
import statistics
import time
from pathlib import Path

import torch

from shared.cli import run_cli
from shared.fp16 import fp32_generation
from shared.ngram import KneserNey, tune_order
from shared.trainer import evaluate

from . import data as chat_data
from .train import pairs


def perplexities(bot, data: Path) -> dict:
    tok = bot.tok
    split = {s: pairs(chat_data.load_split(s, data), tok) for s in chat_data.SPLITS}
    test = split["test"]
    model = evaluate(bot.model, test, bos=tok.bos_id, eos=tok.eos_id)
    out = {"test_pairs": len(test), "pieces": model["tokens"], "model_ppl": model["ppl"]}
    if bot.decoder is not bot.model:
        nll = evaluate(bot.decoder, test, bos=tok.bos_id, eos=tok.eos_id, stepwise=True)["nll"]
        out["fp16_generation_ppl"] = math.exp(nll)
    t0 = time.time()
    seqs = {s: [t for _, t in v] for s, v in split.items()}
    prefixes = {s: [src for src, _ in v] for s, v in split.items()}
    best, by_order = tune_order(seqs["train"], seqs["validation"], orders=(2, 3, 4),
                                vocab_size=tok.vocab_size, bos=tok.bos_id, eos=tok.eos_id,
                                train_prefixes=prefixes["train"],
                                validation_prefixes=prefixes["validation"])
    kn = KneserNey(best, tok.vocab_size).fit(seqs["train"], tok.bos_id, tok.eos_id,
                                            prefixes=prefixes["train"])
    ngram = kn.score(seqs["test"], tok.bos_id, tok.eos_id, prefixes=prefixes["test"])
    out["ngram"] = {"order": best, "validation_ppl_by_order": by_order,
                    "test_ppl": ngram["ppl"], "seconds": round(time.time() - t0, 1)}
    out["ratio_model_to_ngram"] = model["ppl"] / ngram["ppl"]
    return out


def contexts(n: int, data: Path, seed: int = 0) -> list[list[str]]:
    """n (conversation so far) lists from the test split, sampled with a fixed seed."""
    convs = chat_data.load_split("test", data)
    every = [c["turns"][:i] for c in convs for i in range(1, len(c["turns"]))]
    return random.Random(seed).sample(every, min(n, len(every)))


def reply_metrics(bot, ctxs: list[list[str]]) -> dict:
    from .bot import clean_history
    t0 = time.perf_counter()
    replies = []
    for j in range(0, len(ctxs), 50):
        jobs = [(clean_history(c), 1, i) for i, c in enumerate(ctxs[j:j + 50], j)]
        replies += [r[0]["reply"] for r in bot.generate(jobs)]
    dt = time.perf_counter() - t0
    words = [r.lower().split() for r in replies]
    uni = [w for ws in words for w in ws]
    bi = [tuple(ws[k:k + 2]) for ws in words for k in range(len(ws) - 1)]
    top = collections.Counter(replies).most_common(1)[0]
    return {"replies": len(replies),
            "distinct_1": round(len(set(uni)) / max(len(uni), 1), 4),
            "distinct_2": round(len(set(bi)) / max(len(bi), 1), 4),
            "mean_words": round(len(uni) / len(replies), 2),
            "echo_rate": round(sum(r.lower() == c[-1].lower() for r, c in zip(replies, ctxs))
                               / len(replies), 4),
            "most_common_reply": {"text": top[0], "share": round(top[1] / len(replies), 4)},
            "replies_per_s": round(len(replies) / dt, 2),
            "examples": [{"context": c[-2:], "reply": r} for c, r in zip(ctxs[:6], replies)]}


def speed(bot, runs: int = 21) -> dict:
    """p50 of one reply (batch 1, default 3 candidates; first call dropped), with the fp16
    decoder and with the fp32 model."""
    def p50() -> float:
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            bot.reply(["hi! how was your weekend?"], seed=i)
            times.append(time.perf_counter() - t0)
        return round(1000 * statistics.median(times[1:]), 1)

    out = {"reply_p50_ms_batch1": p50()}
    if bot.decoder is not bot.model:
        with fp32_generation(bot):
            out["fp32_reply_p50_ms_batch1"] = p50()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chatbot.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--contexts", type=int, default=200)
    ap.add_argument("--model", help="model folder (default data/models/chat)")
    ap.add_argument("--data", default=str(chat_data.OUT))
    ap.add_argument("--skip-ngram", action="store_true", help="skip the perplexities")
    args = ap.parse_args(argv)
    from .bot import Bot
    bot = Bot.load(args.model)
    report = {"task": "chat", "model": str(args.model or Bot.default_dir()),
              "threads": torch.get_num_threads()}
    if not args.skip_ngram:
        report["perplexity"] = perplexities(bot, Path(args.data))
    report["replies"] = reply_metrics(bot, contexts(args.contexts, Path(args.data)))
    report["speed"] = speed(bot)
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    run_cli(main)
