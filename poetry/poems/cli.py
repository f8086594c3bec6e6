"""Command line for poems: `python -m poetry poem ...` (registered by poetry/cli.py).

    python -m poetry poem --theme 明月 --form qijue -n 2 --seed 1
    python -m poetry poem --theme 秋夜 --keywords "蟋蟀 砧声" --form wujue --seed 1
    python -m poetry poem --theme 春 --form wujue --acrostic 春夏秋冬 --format jsonl
    python -m poetry poem --input themes.txt --output poems.jsonl --form wulv -n 2

Bad input: a warning for what can be repaired, else one line on stderr and exit status 2.
"""
from __future__ import annotations

import json

from shared.batch import item_seed, read_items, run_batch

from .verse import FORMS, get_form

ITEM_KEYS = {"theme", "form", "acrostic", "start", "keywords", "n", "seed"}


def add_parser(sub) -> None:
    p = sub.add_parser("poem", help="classical Chinese poems from a theme",
                       description="Write 绝句/律诗 from a theme (title or keywords).")
    src = p.add_argument_group("what to write")
    src.add_argument("--theme", help="a title or keywords, e.g. 明月")
    src.add_argument("--form", default="qijue", help="one of: " + " ".join(FORMS))
    src.add_argument("-n", type=int, default=1, help="poems per theme (capped at 20)")
    src.add_argument("--acrostic", help="藏头: one head character per line, e.g. 春夏秋冬")
    src.add_argument("--start", help="opening line(s) to continue, e.g. 床前明月光")
    src.add_argument("--keywords", help="the plan: 1-4 words the poem is written from, e.g. "
                     "'蟋蟀 砧声' (default: sampled from the theme for each candidate)")
    rules = p.add_argument_group("rules and sampling")
    rules.add_argument("--rhyme", choices=["pingshui", "xinyun"], default="pingshui",
                       help="the rhyme book, and the tones --tones strict follows: pingshui "
                            "(平水韵, classical tones, the default) or xinyun (中华新韵, modern "
                            "tones)")
    rules.add_argument("--no-rhyme", action="store_true", help="do not force the rhyme")
    rules.add_argument("--tones", choices=["strict"], help="enforce a 平仄 pattern")
    rules.add_argument("--temperature", type=float, default=None,
                       help="sampling temperature (default 0.7)")
    rules.add_argument("--seed", type=int, default=None, help="same seed, same poems")
    io = p.add_argument_group("input and output")
    io.add_argument("--format", choices=["text", "jsonl"], default="text")
    io.add_argument("--input", help="batch: a file of themes, one per line, or JSONL items")
    io.add_argument("--output", help="batch: JSONL output (resumes if it exists)")
    io.add_argument("--model", help="model folder (default data/models/poem)")


def _rhyme(args) -> bool | str:
    return False if args.no_rhyme else args.rhyme


def _writer(args):
    from .writer import PoemWriter
    return PoemWriter.load(args.model)


def show(poem: dict) -> str:
    f = get_form(poem["form"])
    plan = f" · {' '.join(poem['keywords'])}" if poem.get("keywords") else ""
    head = f"{poem['theme']} · {f.zh}{plan}  (score {poem['score']:.3f})"
    body = "\n".join(line + ("，" if i % 2 == 0 else "。") for i, line in enumerate(poem["lines"]))
    return head + "\n" + body


def run(args) -> int:
    if args.input or args.output:
        return run_poem_batch(args)
    if not args.theme:
        raise ValueError("give --theme (or --input FILE --output FILE for a batch)")
    writer = _writer(args)
    poems = writer.write(args.theme, form=args.form, n=args.n, acrostic=args.acrostic,
                         start=args.start, rhyme=_rhyme(args), tones=args.tones,
                         temperature=args.temperature, seed=args.seed,
                         keywords=args.keywords)
    for i, p in enumerate(poems):
        if args.format == "jsonl":
            print(json.dumps(p, ensure_ascii=False))
        else:
            print(("\n" if i else "") + show(p))
    return 0


def run_poem_batch(args) -> int:
    if not (args.input and args.output):
        raise ValueError("a batch needs both --input and --output")
    batch(_writer(args), args.input, args.output, form=args.form, n=args.n,
          acrostic=args.acrostic, start=args.start, rhyme=_rhyme(args), tones=args.tones,
          temperature=args.temperature, seed=args.seed or 0, keywords=args.keywords)
    return 0


def batch(writer, input, output, form: str = "qijue", n: int = 1, acrostic=None, start=None,
          rhyme: bool | str = True, tones=None, temperature: float | None = None, seed: int = 0,
          progress: bool = True, keywords=None) -> dict:
    """The batch convention (shared/batch.py) for poems: item fields override these defaults."""
    def make_job(i: int, item: dict):
        req = writer.request(item.get("theme", ""), item.get("form", form),
                             item.get("acrostic", acrostic), item.get("start", start), rhyme,
                             tones, item.get("keywords", keywords))
        return req, writer.check_n(item.get("n", n)), item_seed(item, seed, i)

    return run_batch(read_items(input, "theme"), output, "poems", make_job,
                     lambda jobs: writer.generate(jobs, temperature), known_keys=ITEM_KEYS,
                     progress=progress)
