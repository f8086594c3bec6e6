"""Command line: `python -m chatbot`.

    python -m chatbot                                   # talk: type a message, Enter; /reset, /quit
    python -m chatbot --message "hi! how was your weekend?" -n 3 --seed 1
    python -m chatbot --input chats.jsonl --output replies.jsonl       # batch, resumable

Batch items: a plain line is one message; a JSON object has "message" (one message),
"history" (a list of turns, the last one yours) or "messages" (chat tools' format:
[{"role": "user"|"assistant", "content": ...}, ...]), and optionally "n" and "seed". Output:
one line per item, in order: {"index", "input", "replies": [{"reply", "score", "source", ...}]}
or {..., "error"}; "source" says whether a reply was generated or retrieved.
Bad input: a warning for what can be repaired, else one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from shared.batch import item_seed, read_items, run_batch
from shared.cli import run_cli

ITEM_KEYS = {"message", "history", "messages", "n", "seed"}


def _bot(args):
    from .bot import Bot
    return Bot.load(args.model)


def talk(bot, args, stdin=sys.stdin, stdout=sys.stdout) -> int:
    """A conversation on the terminal; the bot sees the recent turns."""
    history: list[str] = []
    print("Say something (/reset starts over, /quit or Ctrl-D ends).", file=stdout)
    turn = 0
    for line in stdin:
        msg = line.strip()
        if msg in ("/quit", "/exit"):
            break
        if msg == "/reset":
            history = []
            print("(new conversation)", file=stdout)
            continue
        if not msg:
            continue
        seed = None if args.seed is None else args.seed + turn
        try:                               # a bad message is refused; the conversation goes on
            reply = bot.reply(history + [msg], temperature=args.temperature, top_p=args.top_p,
                              seed=seed)
        except ValueError as e:
            print(f"error: {e}", file=stdout, flush=True)
            continue
        history += [msg, reply]
        turn += 1
        print(f"bot> {reply}", file=stdout, flush=True)
    return 0


def run_batch_file(bot, args) -> int:
    if not (args.input and args.output):
        raise ValueError("a batch needs both --input and --output")
    batch(bot, args.input, args.output, n=args.n, temperature=args.temperature,
          top_p=args.top_p, seed=args.seed or 0)
    return 0


def batch(bot, input, output, n: int = 1, temperature: float | None = None, top_p: float = 0.9,
          seed: int = 0, progress: bool = True) -> dict:
    """The batch convention (shared/batch.py) for chat: item fields override these defaults
    (temperature None: the bot's own, Bot.TEMPERATURE)."""
    from .bot import clean_history

    def make_job(i: int, item: dict):
        given = [k for k in ("message", "history", "messages") if k in item]
        if len(given) > 1:
            raise ValueError(f"give one of 'message', 'history' or 'messages', not {given}")
        turns = clean_history(item[given[0]] if given else "")
        return turns, bot.check_n(item.get("n", n)), item_seed(item, seed, i)

    return run_batch(read_items(input, "message"), output, "replies", make_job,
                     lambda jobs: bot.generate(jobs, temperature, top_p=top_p),
                     known_keys=ITEM_KEYS, progress=progress)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chatbot", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--message", help="one message; print the reply and exit")
    ap.add_argument("-n", type=int, default=1, help="replies per message (capped at 10)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="sampling temperature (default: the bot's, 0.5)")
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=None, help="same seed, same replies")
    ap.add_argument("--format", choices=["text", "jsonl"], default="text")
    ap.add_argument("--input", help="batch: a file of messages, one per line, or JSONL items")
    ap.add_argument("--output", help="batch: JSONL output (resumes if it exists)")
    ap.add_argument("--model", help="model folder (default data/models/chat)")
    args = ap.parse_args(argv)
    if args.n <= 0:
        raise ValueError(f"-n must be positive, got {args.n}")
    if args.input or args.output:
        return run_batch_file(_bot(args), args)
    bot = _bot(args)
    if args.message is None:
        return talk(bot, args)
    replies = bot.replies(args.message, n=args.n, temperature=args.temperature,
                          top_p=args.top_p, seed=args.seed)
    for r in replies:
        print(json.dumps(r, ensure_ascii=False) if args.format == "jsonl" else r["reply"])
    return 0


if __name__ == "__main__":
    run_cli(main)
