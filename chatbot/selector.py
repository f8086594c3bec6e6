"""The reply selector: the core's critic (shared/critic.py) as a dual encoder, reading a
conversation and a candidate reply apart, trained to tell the reply that followed from others.

    python -m chatbot.selector train [--data cache/chat] [--model data/models/chat] [--context 4]
    python -m chatbot.selector evaluate [--data cache/chat] [--model data/models/chat]

Input: the last `context` turns, each closed by <sep>, and the candidate, each in the chat
model's SentencePiece pieces. Pairs from the training conversations of every source but the
persona, English and Chinese in equal numbers; each batch's other replies are its negatives,
and each pair adds a hard one, the reply that followed the training message most like this one
(BM25, chatbot/retrieval.py) (Lowe et al. 2015's dual-encoder task). Validation and test pairs
come from those splits. `evaluate`: hits@1 of 20 and of 100 (the true reply among
19 / 99 random others of the test split, ConvAI2's measure) for the selector, BM25 overlap and
the bot's re-ranking score.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from shared import critic as core

from .format import SEP

CONTEXT = 4           # turns the selector reads
PER_LANG = 30_000     # training replies per language


def selector_ids(tok, turns, reply: str, context: int = CONTEXT) -> tuple[list[int], list[int]]:
    """(context ids, reply ids) as the selector reads them."""
    return tok.encode("".join(t + SEP for t in list(turns)[-context:])), tok.encode(reply)


def examples(convs, lang: str, n: int, seed: int) -> list[tuple[list[str], str]]:
    rng = random.Random(seed)
    out = [(c["turns"][:i], c["turns"][i]) for c in convs
           if c["lang"] == lang and c["source"] != "persona"
           for i in range(1, len(c["turns"]))]
    rng.shuffle(out)
    return out[:n]


def pairs_of(tok, convs, n: int, index, seed: int, context: int) -> tuple[list, list]:
    """(pairs, hard negatives): per example its (context, true reply) ids and the retrieval
    index's reply to the most similar other message (a random reply where there is none)."""
    rng = random.Random(seed)
    pairs, hard = [], []
    for lang in ("en", "zh"):
        exs = examples(convs, lang, n, seed)
        replies = [r for _, r in exs]
        for turns, true in exs:
            pairs.append(selector_ids(tok, turns, true, context))
            other = None
            if index is not None:
                other = next((r for r, _ in index.search(turns[-1], 3) if r != true), None)
            hard.append(tok.encode(other or rng.choice(replies)))
    return pairs, hard


def train(model_dir: Path, data: Path, context: int, epochs: int, per_lang: int,
          out: Path | None = None, log=print) -> dict:
    from shared.checkpoint import load_model

    from . import data as chat_data
    from .retrieval import Retrieval
    model, tok, _ = load_model(model_dir)
    index = Retrieval.load(model_dir / "retrieval.npz", tok) \
        if (model_dir / "retrieval.npz").exists() else None
    pairs, hard = {}, {}
    for split, n in (("train", per_lang), ("validation", 500), ("test", 500)):
        pairs[split], hard[split] = pairs_of(tok, chat_data.load_split(split, data), n, index,
                                             seed=len(split), context=context)
    cfg = core.CriticConfig(vocab=model.cfg.tgt_vocab, emb_dim=model.cfg.emb_dim, hidden=256,
                            max_len=96, pad_id=tok.pad_id, pair=True)
    critic, figures = core.train_pairs(cfg, pairs, epochs=epochs, batch=128, log=log,
                                       init_embeddings=model.tgt_emb.weight.detach(),
                                       hard=hard)
    about = {"task": "chat", "context": context,
             "pairs": "a conversation's last turns and the reply that followed, against the "
                      "batch's other replies and the retrieval index's reply to the most "
                      "similar training message; every source but the persona, English and "
                      "Chinese in equal numbers", **figures}
    core.save(critic, out or model_dir, about)
    return figures


def hits(scores: list[list[float]]) -> float:
    return round(sum(r[0] > max(r[1:]) for r in scores) / max(len(scores), 1), 4)


def evaluate(bot, data: Path, n: int = 500, seed: int = 0) -> dict:
    """hits@1 of 20 and of 100 on the test split, per language: the selector, BM25 overlap of
    the last message (the TF-IDF cosine the bot uses) and the bot's re-ranking score."""
    from . import data as chat_data
    from .evaluate import combined, ranking_scores
    rng = random.Random(seed)
    out = {}
    for lang in ("en", "zh"):
        exs = examples(chat_data.load_split("test", data), lang, n, seed)
        replies = [r for _, r in exs]
        b = bot.for_lang(lang)
        context = bot.critic.about.get("context", CONTEXT) if bot.critic is not None \
            else CONTEXT
        row = {"examples": len(exs)}
        for k in (20, 100):
            cands = [[true] + [r for r in rng.sample(replies, k + 5) if r != true][:k - 1]
                     for _, true in exs]
            if bot.critic is not None:
                flat = [selector_ids(bot.tok, turns, c, context)
                        for (turns, _), cs in zip(exs, cands) for c in cs]
                s = bot.critic.match([c for c, _ in flat], [r for _, r in flat])
                row[f"selector_of_{k}"] = hits([s[i * k:(i + 1) * k] for i in range(len(exs))])
            scores = ranking_scores(b, exs, cands)
            row[f"tfidf_of_{k}"] = hits(scores["tfidf"])
            row[f"rerank_of_{k}"] = hits(combined(scores, b.weights["backward"],
                                                  b.weights["overlap"]))
        out[lang] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chatbot.selector", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["train", "evaluate"])
    ap.add_argument("--data", type=Path, default=Path("cache/chat"))
    ap.add_argument("--model", type=Path, default=None, help="default data/models/chat")
    ap.add_argument("--context", type=int, default=CONTEXT, help="turns the selector reads")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-lang", type=int, default=PER_LANG)
    ap.add_argument("--out", type=Path, default=None,
                    help="train: where the selector goes (default: beside the model)")
    ap.add_argument("--examples", type=int, default=500, help="evaluate: test examples a language")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from .bot import Bot
    model_dir = args.model or Bot.default_dir()
    log = lambda m: print(m, file=sys.stderr, flush=True)
    if args.action == "train":
        figures = train(model_dir, args.data, args.context, args.epochs, args.per_lang,
                        args.out, log=log)
        print(json.dumps(figures["hits_at_1_of_20"]))
    else:
        print(json.dumps(evaluate(Bot.load(model_dir), args.data, args.examples)))
    return 0


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
