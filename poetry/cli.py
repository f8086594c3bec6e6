"""Command line: `python -m poetry poem ...` (poetry/poems/cli.py) and `python -m poetry tune ...`
(poetry/tunes/cli.py).

Bad input: a warning for what can be repaired, else one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse

from shared.cli import run_cli

from .poems import cli as poem_cli
from .tunes import cli as tune_cli


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry",
                                 description="Shiyu poems and tunes from the command line.")
    sub = ap.add_subparsers(dest="command", required=True)
    poem_cli.add_parser(sub)
    tune_cli.add_parser(sub)
    args = ap.parse_args(argv)
    if args.n is not None and args.n <= 0:
        raise ValueError(f"-n must be positive, got {args.n}")
    return {"poem": poem_cli.run, "tune": tune_cli.run}[args.command](args)


if __name__ == "__main__":
    run_cli(main)
