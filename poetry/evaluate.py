"""Held-out evaluation of the shipped poem and tune models.

    python -m poetry.evaluate poem [--json] [--poems 200]      (poetry/poems/evaluate.py)
    python -m poetry.evaluate tune [--json] [--tunes 200]      (poetry/tunes/evaluate.py)
"""
from __future__ import annotations

import argparse

from shared import report
from shared.cli import run_cli

from .poems import evaluate as poem_eval
from .tunes import evaluate as tune_eval


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="task", required=True)
    for name, module in (("poem", poem_eval), ("tune", tune_eval)):
        p = sub.add_parser(name, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        report.add_option(p)
    args = ap.parse_args(argv)
    args.command = report.command_line("python -m poetry.evaluate", argv)
    return {"poem": poem_eval.run, "tune": tune_eval.run}[args.task](args)


if __name__ == "__main__":
    run_cli(main)
