"""Evaluation reports: an `evaluate` command's JSON beside the Markdown tables made from it.

    python -m poetry.evaluate tune --report docs/eval/tune.md    # writes tune.json and tune.md
    python -m shared.report docs/eval                            # every .md again from its .json
    python -m shared.report --check docs/eval                    # exit 1 if a .md is stale

The JSON holds the command, the date, the machine and the command's own output ("result");
the Markdown is made from it alone, so a table in docs/eval/ is never typed by hand. Tables:
a section per top-level key of the result; a mapping of numbers and words is a two-column
table, a mapping of such mappings a table with a row per key and a column per inner key;
anything deeper is shown as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _relative(x):
    """Paths inside the project as the project names them (data/models/tune), in any value."""
    if isinstance(x, str) and x.startswith(f"{ROOT}/"):
        return x[len(str(ROOT)) + 1:]
    if isinstance(x, dict):
        return {k: _relative(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_relative(v) for v in x]
    return x


def machine() -> str:
    from .runs import hardware          # the model cards' words for the same machine
    return hardware()


def add_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--report", metavar="PATH.md", type=Path,
                    help="also write the result as Markdown tables to PATH.md, with its JSON "
                         "(command, date, machine) beside it as PATH.json")


def command_line(prog: str, argv) -> str:
    """The command a report names: `prog` and its arguments as given."""
    import shlex
    return " ".join([prog, shlex.join(sys.argv[1:] if argv is None else list(argv))]).strip()


def write(result: dict, command: str, md_path: str | Path) -> Path:
    """`md_path` (.md) and its .json beside it; returns the .md path."""
    md = Path(md_path)
    if md.suffix != ".md":
        raise ValueError(f"--report takes a .md path (its .json goes beside it), got {md}")
    doc = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": machine(),
           "result": _relative(result)}
    md.parent.mkdir(parents=True, exist_ok=True)
    md.with_suffix(".json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n",
                                       encoding="utf-8")
    md.write_text(render(doc, md.stem), encoding="utf-8")
    return md


def _scalar(x) -> bool:
    return x is None or isinstance(x, (str, int, float, bool))


def _cell(x) -> str:
    if isinstance(x, float):
        text = f"{x:.4g}" if abs(x) < 1e6 else f"{x:.3e}"
    elif isinstance(x, (list, dict)):
        text = json.dumps(x, ensure_ascii=False)
    else:
        text = "" if x is None else str(x)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 160 else text[:159] + "…"


def _table(value: dict) -> list[str] | None:
    """Rows of a Markdown table for `value`, or None when it has no table shape."""
    if value and all(_scalar(v) or (isinstance(v, list) and all(map(_scalar, v)))
                     for v in value.values()):
        return ["| | |", "| --- | --- |"] + [f"| {k} | {_cell(v)} |" for k, v in value.items()]
    if value and all(isinstance(v, dict) and v and all(_scalar(x) or isinstance(x, list)
                                                        for x in v.values())
                     for v in value.values()):
        cols = list(dict.fromkeys(c for v in value.values() for c in v))
        return (["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
                + [f"| {k} | " + " | ".join(_cell(v.get(c)) for c in cols) + " |"
                   for k, v in value.items()])
    return None


def _section(title: str, value, depth: int) -> list[str]:
    head = "#" * min(depth, 6) + f" {title}"
    if _scalar(value) or isinstance(value, list) and all(map(_scalar, value)):
        return [f"- **{title}**: {_cell(value)}"]
    if isinstance(value, dict):
        rows = _table(value)
        if rows is not None:
            return [head, ""] + rows + [""]
        flat = lambda v: _scalar(v) or isinstance(v, list) and all(map(_scalar, v))  # noqa
        loose = {k: v for k, v in value.items() if flat(v)}
        out = [head, ""] + ((_table(loose) + [""]) if loose else [])
        for k, v in value.items():
            if k not in loose:
                out += _section(str(k), v, depth + 1) + [""]
        return out
    return [head, "", "```json", json.dumps(value, ensure_ascii=False, indent=1), "```", ""]


def render(doc: dict, name: str) -> str:
    lines = [f"# Evaluation: {name}", "",
             "Made by `python -m shared.report` from the JSON beside this file; do not edit.", "",
             f"- **command**: `{doc['command']}`", f"- **date**: {doc['date']}",
             f"- **machine**: {doc['machine']}", ""]
    result = doc["result"]
    loose = {k: v for k, v in result.items() if _scalar(v)}
    if loose:
        lines += _table(loose) + [""]
    for k, v in result.items():
        if k not in loose:
            lines += _section(k, v, 2) + [""]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def regenerate(folder: Path, check: bool = False) -> list[Path]:
    """Every .md of `folder` made again from its .json; with `check`, the stale ones only
    (nothing written)."""
    stale = []
    for j in sorted(Path(folder).glob("*.json")):
        doc = json.loads(j.read_text(encoding="utf-8"))
        md = j.with_suffix(".md")
        text = render(doc, j.stem)
        if not md.exists() or md.read_text(encoding="utf-8") != text:
            stale.append(md)
            if not check:
                md.write_text(text, encoding="utf-8")
    return stale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shared.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", default=Path("docs/eval"))
    ap.add_argument("--check", action="store_true", help="say which tables are stale; exit 1")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        raise ValueError(f"{args.folder} is not a folder")
    stale = regenerate(args.folder, args.check)
    for md in stale:
        print(f"{'stale' if args.check else 'wrote'}: {md}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    from .cli import run_cli
    run_cli(main)
