"""The Batch tab's handler (/run_batch): an uploaded file of items run through the task's
batch convention (the batch CLIs' own), in this process with the loaded writer; the JSONL
result is a download, with a summary and a preview of its first results.

The upload is checked first: it must be one that Gradio's upload route wrote (never a path
on the server), of at most MAX_UPLOAD_MB and MAX_ITEMS lines.
"""
from __future__ import annotations

import json
import stat
from pathlib import Path

import gradio as gr

from chatbot import cli as chat_cli
from poetry.poems import cli as poem_cli
from poetry.tunes import cli as tune_cli
from server.files import scratch
from server.handlers import WRITERS, _number, _refuse, _user_error, writer
from shared.batch import read_lines

MAX_UPLOAD_MB = 2       # a batch upload: at most 2 MB (Gradio refuses bigger uploads too)
MAX_ITEMS = 1000        # and at most 1,000 items (lines) per batch in the app
TEXT_FIELDS = ("message", "theme", "setting")   # what a plain line is, per task's batch reader


def _upload(file) -> Path:
    """The uploaded batch file, checked: it must lie in Gradio's upload folder (a client cannot
    point the server at its own files), hold at most MAX_UPLOAD_MB and MAX_ITEMS lines."""
    if file is None:
        raise _refuse("upload a file: one theme per line, or JSONL items")
    path = Path(str(file)).resolve()
    uploads = Path(gr.utils.get_upload_folder()).resolve()
    try:
        st = path.stat() if uploads in path.parents else None
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise _refuse("the batch file must be uploaded through the app")
    if st.st_size > MAX_UPLOAD_MB << 20:
        raise _refuse(f"the file is over {MAX_UPLOAD_MB} MB; split it, or use the batch CLI")
    try:
        lines = len(read_lines(path))
    except ValueError as e:
        raise _user_error(e) from None
    if lines > MAX_ITEMS:
        raise _refuse(f"the file has {lines} lines; the app takes {MAX_ITEMS} at most "
                       "(the batch CLI takes any number)")
    if not lines:
        raise _refuse("the file is empty: give one item per line, plain text (a message, a "
                      "theme, or METER KEY [RHYTHM]) or a JSON object")
    return path


def run_batch(file, task: str = "poem", form: str = "qijue", n: int = 1, seed: int = 0,
              progress=gr.Progress(track_tqdm=True)):
    """The task's batch convention, in this process with the loaded writer. Returns the JSONL
    result, a one-line summary and a preview of the first results."""
    file = _upload(file)
    if task not in WRITERS:
        raise _refuse(f"task must be one of {', '.join(WRITERS)}, got {task!r}")
    n, seed = _number(n, "results per item"), _number(seed, "seed")
    out = scratch(f"{task}s.jsonl")
    run = {"chat": chat_cli.batch, "poem": poem_cli.batch, "tune": tune_cli.batch}[task]
    options = {"form": form} if task == "poem" else {}
    try:
        summary = run(writer(task), file, out, n=n, seed=seed, progress=True, **options)
    except (ValueError, FileNotFoundError) as e:
        raise _user_error(e) from None
    return (str(out), f"{summary['items']} items, {summary['errors']} with errors",
            preview(out))


PREVIEW = 5             # results the Batch tab shows under the download
ITEM_CHARS = 120        # characters of an item the preview shows (the download has it all)
ERROR_CHARS = 300       # and of an error message, cut at a word's end


def _cut(text: str, limit: int) -> str:
    """`text` of at most `limit` characters: cut at the last space before it, where there is
    one in its second half, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head) + "…"


def preview(path: Path, k: int = PREVIEW) -> str:
    """The first k lines of a batch result as a table: each item as it was given and its
    first result, or for an item that failed, its whole error message."""
    def first(rec: dict) -> str:
        if "error" in rec:
            return "⚠ " + _cut(str(rec["error"]), ERROR_CHARS)
        for key, text in (("poems", "poem"), ("replies", "reply"), ("tunes", "abc")):
            if rec.get(key):
                body = rec[key][0][text]
                if key == "tunes":      # the tune's first line of notes, after its header
                    body = (body.split("\nK:", 1)[-1].splitlines()[1:] or [body])[0]
                return body
        return "(nothing)"

    def cell(x, limit: int = ITEM_CHARS) -> str:
        x = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
        # control and other invisible characters as escapes: a line of them shows as such
        x = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in x)
        return _cut(x, limit).replace("|", "\\|").replace("<", "&lt;")

    lines = [x for x in path.read_text(encoding="utf-8").split("\n") if x]   # U+2028 is text
    recs = [json.loads(x) for x in lines[:k]]

    def item(x):                            # a plain line's text, not {"theme": "明月"}
        if isinstance(x, dict) and len(x) == 1 and next(iter(x)) in TEXT_FIELDS:
            value = next(iter(x.values()))
            return value if isinstance(value, str) else x
        return x
    rows = "\n".join(f"| {r['index']} | {cell(item(r['input']))} | "
                     f"{cell(first(r), ERROR_CHARS + 2)} |" for r in recs)
    more = f"\n\n(first {k} of {len(lines)})" if len(lines) > k else ""
    return f"| # | item | first result |\n| --- | --- | --- |\n{rows}{more}"
