"""Command line for tunes: `python -m poetry tune ...` (registered by poetry/cli.py).

    python -m poetry tune --meter 6/8 --key Dmaj --rhythm jig -n 3 --seed 1
    python -m poetry tune --meter 6/8 --key Ador --start "|:A2B c2d|" --out-dir out/tunes
    python -m poetry tune --meter 3/4 --key G --rhythm air --form AB
    python -m poetry tune --input settings.jsonl --output tunes.jsonl --seed 1

Batch items are JSON objects with any of meter, key, rhythm, form, start, n, seed (missing ones come
from the command line), or plain lines "METER KEY [RHYTHM]" such as `6/8 Dmaj jig`. Output is
one JSONL line per item, `{"index", "input", "tunes": [...]}` or `{"index", "input", "error"}`;
item i uses seed derive_seed(item's seed, 0) if it has one, else derive_seed(--seed, i).
Bad input: a warning for what can be repaired, else one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from shared.batch import item_seed, read_items, run_batch

from .abc import METERS

ITEM_KEYS = {"meter", "key", "rhythm", "form", "start", "n", "seed"}
FIELDS = ("abc", "meter", "key", "rhythm", "form", "score")      # what a JSONL tune line holds


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tune", help="folk tunes in ABC from a few settings",
                       description="Write folk tunes in ABC (with MIDI, WAV and SVG on request).")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to write")
    what.add_argument("--meter", help="one of C, C|, " + ", ".join(METERS))
    what.add_argument("--key", help="ABC K: syntax, e.g. D, Dmaj, Ador, Emin, Gmix")
    what.add_argument("--rhythm", help="jig, reel, hornpipe, slip jig, march, strathspey, air, "
                                       "song, other (default: the meter's most common)")
    what.add_argument("--form", help="AABB (two repeated 8-bar parts), AB (two 8-bar parts) or "
                                     "free (default: the rhythm's usual form in the corpus)")
    what.add_argument("--start", help='opening bar(s) in ABC (L:1/8, in --key), e.g. "|:A2B c2d|"')
    what.add_argument("-n", type=int, default=1, help="tunes per setting (capped at 10)")
    samp = p.add_argument_group("sampling")
    samp.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    samp.add_argument("--seed", type=int, default=None, help="same seed, same tunes")
    io = p.add_argument_group("input and output")
    io.add_argument("--format", choices=["abc", "jsonl"], default="abc")
    io.add_argument("--out-dir", help="also write .abc .mid .wav .svg per tune into this folder")
    io.add_argument("--input", help="batch: JSONL settings (or lines 'METER KEY [RHYTHM]')")
    io.add_argument("--output", help="batch: JSONL output (resumes if it exists)")
    io.add_argument("--model", help="model folder (default data/models/tune)")


def _writer(args):
    from .writer import TuneWriter
    return TuneWriter.load(args.model)


def public(tune: dict) -> dict:
    return {k: tune[k] for k in FIELDS}


def _render(tunes: list[dict], out_dir: str, prefix: str) -> None:
    from .render import render_all
    for k, t in enumerate(tunes, 1):
        render_all(t["abc"], out_dir, f"{prefix}{k}")


def run(args) -> int:
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {args.temperature}")
    if args.input or args.output:
        return run_batch_cli(args)
    if not args.meter or not args.key:
        raise ValueError("give --meter and --key (or --input FILE --output FILE for a batch)")
    writer = _writer(args)
    tunes = writer.write(args.meter, args.key, rhythm=args.rhythm, start=args.start, n=args.n,
                         temperature=args.temperature, seed=args.seed, form=args.form)
    if args.out_dir:
        _render(tunes, args.out_dir, "tune")
    for i, t in enumerate(tunes):
        if args.format == "jsonl":
            print(json.dumps(public(t), ensure_ascii=False))
        else:
            print(("\n" if i else "") + t["abc"], end="")
    if args.out_dir:
        print(f"wrote {len(tunes)} tune(s) as .abc .mid .wav .svg into {args.out_dir}",
              file=sys.stderr)
    return 0


def parse_item(item: dict) -> dict:
    """A plain-text line 'METER KEY [RHYTHM]' -> fields; JSON items pass through."""
    if "setting" not in item:
        return item
    words = str(item["setting"]).split()
    if len(words) < 2:      # fails this item alone, in run_batch
        return {"_error": f"a plain line needs 'METER KEY [RHYTHM]', got {item['setting']!r}",
                "_raw": item["setting"]}
    out = {"meter": words[0], "key": words[1]}
    if len(words) > 2:
        out["rhythm"] = " ".join(words[2:])
    return out


def run_batch_cli(args) -> int:
    if not (args.input and args.output):
        raise ValueError("a batch needs both --input and --output")
    batch(_writer(args), args.input, args.output, meter=args.meter, key=args.key,
          rhythm=args.rhythm, start=args.start, n=args.n, temperature=args.temperature,
          seed=args.seed or 0, out_dir=args.out_dir, form=args.form)
    return 0


def batch(writer, input, output, meter=None, key=None, rhythm=None, start=None, n: int = 1,
          temperature: float = 1.0, seed: int = 0, out_dir=None, progress: bool = True,
          form=None) -> dict:
    """The batch convention (shared/batch.py) for tunes: item fields override these defaults."""
    def make_job(i: int, item: dict):
        m, k = item.get("meter", meter), item.get("key", key)
        if not m or not k:
            raise ValueError("the item has no meter or key (give them per item or with "
                             "--meter/--key)")
        req = writer.request(str(m), str(k), item.get("rhythm", rhythm),
                             item.get("start", start), item.get("form", form))
        return req, writer.check_n(item.get("n", n)), item_seed(item, seed, i)

    def finish(i: int, tunes: list[dict]) -> list[dict]:
        if out_dir:
            _render(tunes, out_dir, f"item{i}_tune")
        return [public(t) for t in tunes]

    # plain lines 'METER KEY [RHYTHM]' become fields before the shared validation
    return run_batch([parse_item(it) for it in read_items(input, "setting")], output, "tunes",
                     make_job, lambda jobs: writer.generate(jobs, temperature),
                     known_keys=ITEM_KEYS, finish=finish, progress=progress)
