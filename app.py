"""Shiyu's Gradio app: one tab per task (chat, poems, tunes), plus batch and model-info tabs.

    python app.py [--port 7860] [--host 127.0.0.1]        (or: make app)

Models load once per process, on first use. Every action is a named API endpoint that
`gradio_client` can call: /chat (one message in, the reply streamed out), /reply (a whole
conversation in, the next turn out), /write_poems, /write_tunes, /run_batch, /model_info.
The same server answers OpenAI clients at /v1/chat/completions and /v1/models
(chatbot/openai_api.py).
Bad input shows one clear message (gr.Error) and logs one line, never a traceback.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import random
import shutil
import socket
import stat
import tempfile
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterator


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """As MALLOC_ARENA_MAX=2, set before the server's threads exist. glibc gives threads their
    own malloc arenas (up to 8 per core) and memory freed in one is not reused by another, so
    the server's RSS creeps under `python load.py --clients 16 --seconds 60 --rounds 3`; this
    limits the arenas (`trim_memory_every` is what holds RSS flat). No-op off glibc."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)          # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


fewer_malloc_arenas()


def trim_memory_every(seconds: float = 5.0) -> None:
    """A daemon thread that hands freed heap memory back to the system every `seconds`
    (glibc's malloc_trim; no-op elsewhere). Freed blocks otherwise stay resident: compare the
    server's RSS after each round of `python load.py --clients 16 --seconds 60 --rounds 3`."""
    import ctypes
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return

    def loop():
        while True:
            time.sleep(seconds)
            trim(0)
    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()


def _own_gradio_folder() -> Path | None:
    """Gradio's upload and cache folder: one of the app's own (removed at exit) unless
    GRADIO_TEMP_DIR names another. Only the app's own is pruned by size (`cap_folders`):
    the shared default /tmp/gradio holds other apps' files too."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return None
    own = Path(tempfile.mkdtemp(prefix="shiyu-gradio-"))
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(own)
    return own


GRADIO_FOLDER = _own_gradio_folder()

import gradio as gr  # noqa: E402  (after the arena limit: gradio and torch start threads)

from chatbot import cli as chat_cli
from chatbot import openai_api
from chatbot.bot import Bot
from poetry.poems import MAX_N as MAX_POEMS
from poetry.poems import PoemWriter
from poetry.poems import cli as poem_cli
from poetry.poems.verse import FORMS
from poetry.tunes import MAX_N as MAX_TUNES
from poetry.tunes import TuneWriter
from poetry.tunes import cli as tune_cli
from poetry.tunes.abc import METERS
from poetry.tunes.render import TEMPO
from poetry.tunes.rules import FORMS as TUNE_FORMS
from poetry.tunes.writer import known_rhythms
from server.inputs import guard, unknown_endpoint
from shared.batch import read_lines
from shared.cli import is_number, shown

FORM_CHOICES = [(f"{f.zh} ({f.name})", f.name) for f in FORMS.values()]
WRITERS = {"chat": Bot, "poem": PoemWriter, "tune": TuneWriter}
# the model folder of each task (None = its shipped model); build_app may point elsewhere
MODEL_DIRS: dict[str, Path | None] = {task: None for task in WRITERS}


_LOADING = threading.Lock()


@lru_cache(maxsize=None)
def _cached(task: str, model_dir: Path | None):
    return WRITERS[task].load(model_dir)


def _load(task: str, model_dir: Path | None):
    with _LOADING:                # two first requests at once load the model once
        return _cached(task, model_dir)


def writer(task: str):
    """The task's writer, loaded once per process and model folder."""
    return _load(task, MODEL_DIRS[task])


log = logging.getLogger("shiyu.app")


def _refuse(message: str) -> gr.Error:
    """A user error: shown on the page as it is, and one line in the server log (Gradio
    would print a traceback for it)."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def _quiet(component):
    """Gradio refuses a value outside a component's choices or range (only a script can send
    one) with a traceback in the log; here it is refused as every user error is: one line."""
    check = component.preprocess

    numeric = isinstance(component, (gr.Number, gr.Slider))
    whole = isinstance(component, gr.Number) and component.precision == 0

    def preprocess(payload):
        if numeric and payload is not None and (not is_number(payload) or whole and not (
                isinstance(payload, int) or float(payload).is_integer())):
            kind = "a whole number" if whole else "a number"
            raise _refuse(f"{component.label or 'a value'}: must be {kind}, got {shown(payload)}")
        try:
            return check(payload)
        except Exception as e:                   # noqa: BLE001  (any refusal, e.g. "hot")
            msg = e.message if isinstance(e, gr.Error) else str(e).splitlines()[0]
            raise _refuse(f"{component.label or 'a value'}: {msg}") from None
    component.preprocess = preprocess           # per instance: a gr.Component subclass would
    return component                            # make Gradio write an app.pyi beside this file


_NOTES: dict[int, list[str]] = {}               # thread -> the writers' notes while it listens
_show_warning = warnings.showwarning


def _note(message, category, filename, lineno, file=None, line=None):
    notes = _NOTES.get(threading.get_ident())
    if notes is not None and issubclass(category, UserWarning):
        notes.append(str(message))
    else:
        _show_warning(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def notes() -> Iterator[list[str]]:
    """The UserWarnings (a writer's repairs and notes: "theme characters ... were dropped")
    raised in this thread meanwhile, each once, for the page; other threads' warnings are not
    caught (unlike warnings.catch_warnings, which is process-wide). Never hold it across a
    yield: a generator may resume in another thread."""
    if warnings.showwarning is not _note:
        warnings.showwarning = _note
    warnings.filterwarnings("always", category=UserWarning)    # every request hears its own
    got = _NOTES[threading.get_ident()] = []
    try:
        yield got
    finally:
        _NOTES.pop(threading.get_ident(), None)
        got[:] = list(dict.fromkeys(got))


def _user_error(e: Exception) -> gr.Error:
    if isinstance(e, gr.Error):      # a ValueError too: already refused (and logged)
        return e
    return _refuse(str(e).splitlines()[0] if str(e) else e.__class__.__name__)


# The range of every numeric parameter, shared by the sliders and the endpoints' own checks
# (a script calling the API gets what the page allows, never a silent 5.0 temperature).
LIMITS = {"chat temperature": openai_api.TEMPERATURE, "poem temperature": (0.3, 1.5),
          "tune temperature": (0.5, 1.5), "poems": (1, MAX_POEMS), "tunes": (1, MAX_TUNES),
          "tempo": TEMPO, "results per item": (1, 5), "seed": (0, 2**31 - 1)}
WHOLE = {"poems", "tunes", "tempo", "results per item", "seed"}


def _number(value, name: str):
    """`value` as the number LIMITS[name] allows, else one clear error."""
    lo, hi = LIMITS[name]
    whole = name in WHOLE
    kind = "a whole number" if whole else "a number"
    x = value
    if isinstance(value, str) and len(value) <= 40:     # a number typed into a text box
        with contextlib.suppress(ValueError):
            x = int(value) if whole else float(value)
    ok = is_number(x) and lo <= x <= hi and (not whole or x == int(x))
    if not ok:
        raise _refuse(f"{name} must be {kind} from {lo} to {hi}, got {shown(value)}")
    return int(x) if whole else float(x)


def _seed(value) -> int | None:
    """'' or None -> a random seed; a whole number -> itself; anything else -> a clear error."""
    if value is None or str(value).strip() == "":
        return None
    return _number(str(value).strip(), "seed")


def _text(content) -> str:
    """A chat message's text: a plain string, or Gradio 6's list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        return " ".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return "" if content is None else str(content)


def chat(message, temperature, seed, history=None):
    """Streams the reply as it grows; the bot sees the conversation's recent turns
    (`history`: the chat so far, as messages). Bad input fails before the first part."""
    turns = [_text(m.get("content")) for m in history or [] if isinstance(m, dict)]
    try:
        yield from writer("chat").stream(turns + [_text(message)],
                                         temperature=_number(temperature, "chat temperature"),
                                         seed=_seed(seed))
    except (ValueError, FileNotFoundError) as e:
        raise _user_error(e) from None


def chat_turn(message, history, temperature, seed):
    """The Chat tab: your message joins the chat and the reply streams in under it. A refused
    message changes nothing (the box keeps your text and stays usable)."""
    history = list(history or [])
    said = history + [{"role": "user", "content": _text(message)}]
    box = ""                                  # cleared once: what you type meanwhile stays
    for part in chat(message, temperature, seed, history):
        yield box, said + [{"role": "assistant", "content": part}]
        box = gr.skip()


def reply(conversation: list[str], temperature: float = Bot.TEMPERATURE,
          seed: str = "") -> str:
    """The bot's next turn after `conversation` (the turns so far, the last one yours):
    for scripts that keep the conversation themselves."""
    try:
        return writer("chat").reply(conversation,
                                    temperature=_number(temperature, "chat temperature"),
                                    seed=_seed(seed))
    except (ValueError, FileNotFoundError) as e:
        raise _user_error(e) from None


def _show_poems(poems: list[dict]) -> str:
    """Each poem under a title line (明月 · 七绝), one verse per line, then its plan and score."""
    def one(p):
        plan = f"关键词 {' '.join(p['keywords'])} · " if p.get("keywords") else ""
        verses = "\n".join(line + ("，" if i % 2 == 0 else "。")
                           for i, line in enumerate(p["lines"]))
        return f"{p['theme']} · {FORMS[p['form']].zh}\n{verses}\n({plan}score {p['score']:.3f})"
    return "\n\n".join(one(p) for p in poems)


def write_poems(theme, form, n, acrostic, start, rhyme, strict, temperature, seed,
                keywords=""):
    """Streams the first poem character by character, then shows all n poems, with the
    downloads (poems.txt as shown, poems.jsonl a poem a line). `keywords`: the plan (empty =
    sampled from the theme for each candidate)."""
    seed = _seed(seed)
    kw = dict(form=form, acrostic=acrostic or None, start=start or None, rhyme=bool(rhyme),
              tones="strict" if strict else None,
              temperature=_number(temperature, "poem temperature"),
              # one seed for the streamed and the shown poem, also when none is given
              seed=random.randrange(LIMITS["seed"][1]) if seed is None else seed,
              keywords=(keywords or "").strip() or None)
    n = _number(n, "poems")
    try:
        said: list[str] = []
        if n == 1:                     # streamed: the stream's result is the poem shown
            parts = writer("poem").stream(theme, **kw)
            while True:
                try:
                    with notes() as got:
                        partial = next(parts)
                except StopIteration as done:
                    poems = done.value
                    break
                finally:
                    said += got
                yield partial, "", None
        else:
            with notes() as said:
                poems = writer("poem").write(theme, n=n, **kw)
        said = list(dict.fromkeys(said))
    except ValueError as e:
        raise _user_error(e) from None
    text = _show_poems(poems)
    txt = scratch("poems.txt")
    txt.write_text(text + "\n", encoding="utf-8")
    jsonl = txt.with_suffix(".jsonl")
    jsonl.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in poems),
                     encoding="utf-8")
    yield text, "\n".join(f"⚠ {m}" for m in said), [str(txt), str(jsonl)]


def write_tunes(meter, key, rhythm, start, n, temperature, seed, form="", tempo=120):
    """`form`: AABB, AB or free; empty = the rhythm's usual form. `tempo`: quarter notes a
    minute, written into the ABC (Q:) and played by the MIDI and the audio. Returns the ABC, a
    score of every tune (scaled to the column), the first tune's audio, and the downloads
    (the ABC, and a MIDI and a WAV file a tune)."""
    from poetry.tunes.render import fit_width, midi_to_wav, svg_and_midi, with_tempo, write_wav
    n, tempo = _number(n, "tunes"), _number(tempo, "tempo")
    temperature, seed = _number(temperature, "tune temperature"), _seed(seed)
    try:
        with notes() as said:                  # the writer's notes: a toast each
            tunes = writer("tune").write(meter=meter, key=key, rhythm=rhythm or None,
                                         start=start or None, n=n, temperature=temperature,
                                         seed=seed, form=form or None)
        abcs = [with_tempo(t["abc"], tempo) for t in tunes]
    except (ValueError, TypeError) as e:
        raise _user_error(e) from None
    for note in said:
        gr.Warning(note)                     # e.g. "only 2 of 1,851 tunes in 6/8 are reels"
    abc = "\n\n".join(abcs)
    out = scratch("tunes.abc")
    out.write_text(abc, encoding="utf-8")
    files, svgs = [str(out)], []
    for i, a in enumerate(abcs, 1):          # one verovio load a tune: score and MIDI
        svg, midi = svg_and_midi(a)
        svgs.append(svg)
        mid, wav = out.parent / f"tune-{i}.mid", out.parent / f"tune-{i}.wav"
        mid.write_bytes(midi)
        write_wav(wav, *midi_to_wav(midi))
        files += [str(mid), str(wav)]
    label = (lambda i: f"<p><b>Tune {i}</b>{' (the one you hear)' if i == 1 else ''}</p>"
             if len(abcs) > 1 else "")
    score = "".join(label(i) + fit_width(svg) for i, svg in enumerate(svgs, 1))
    return abc, score, files[2], files       # the player plays the first tune's WAV download:
                                             # Gradio caches one copy of it, not two


SCRATCH_AGE = 600      # seconds a download stays: Gradio copies it to its cache on return, and
                       # Blocks(delete_cache=...) removes those copies on the same schedule
TEMP_CAP_MB = 500      # and the two folders together keep at most this much: the oldest files
FRESH = 60             # go first, never one younger than FRESH seconds (it may still be written,
                       # fetched or, an upload, about to be run). A tune call leaves ~4 MB.
_CAPPING = threading.Lock()


@lru_cache(maxsize=None)
def _scratch_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="shiyu-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def scratch(name: str) -> Path:
    """A fresh path `<one folder per process>/<n>/<name>` for a file to download; folders
    older than SCRATCH_AGE are removed first, so the app's own files stay bounded."""
    root = _scratch_root()
    now = time.time()
    for d in root.iterdir():
        try:                      # aged by its newest file: a batch still writing stays
            newest = max([f.stat().st_mtime for f in d.iterdir()] + [d.stat().st_mtime])
        except OSError:           # removed by another request meanwhile
            continue
        if now - newest > SCRATCH_AGE:
            shutil.rmtree(d, ignore_errors=True)
    cap_folders([root] + ([GRADIO_FOLDER] if GRADIO_FOLDER else []), TEMP_CAP_MB * 1_000_000,
                FRESH)
    d = Path(tempfile.mkdtemp(dir=root))
    return d / name


def cap_folders(roots: list[Path], cap: int, fresh: float) -> None:
    """Remove the oldest files under `roots` until they hold at most `cap` bytes, never one
    modified or read in the last `fresh` seconds (its times are read again just before); the
    folders left empty go too. One request at a time does it."""
    with _CAPPING:
        files = []
        for root in roots:
            for f in root.rglob("*") if root.is_dir() else ():
                with contextlib.suppress(OSError):    # removed by another request meanwhile
                    st = f.stat()
                    if f.is_file():
                        files.append((max(st.st_mtime, st.st_atime), st.st_size, f))
        total = sum(size for _, size, _ in files)
        for _, size, f in sorted(files):
            if total <= cap:
                break
            with contextlib.suppress(OSError):
                st = f.stat()
                if time.time() - max(st.st_mtime, st.st_atime) < fresh:
                    continue                          # touched since the listing: it stays
                f.unlink()
                total -= size
                for parent in f.parents:
                    if parent in roots or any(parent.iterdir()):
                        break
                    parent.rmdir()


MAX_UPLOAD_MB = 2       # a batch upload: at most 2 MB (Gradio refuses bigger uploads too)
MAX_ITEMS = 1000        # and at most 1,000 items (lines) per batch in the app


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


def preview(path: Path, k: int = PREVIEW) -> str:
    """The first k lines of a batch result as a table: each item and its first result."""
    def first(rec: dict) -> str:
        if "error" in rec:
            return f"⚠ {rec['error']}"
        for key, text in (("poems", "poem"), ("replies", "reply"), ("tunes", "abc")):
            if rec.get(key):
                body = rec[key][0][text]
                if key == "tunes":      # the tune's first line of notes, after its header
                    body = (body.split("\nK:", 1)[-1].splitlines()[1:] or [body])[0]
                return body
        return "(nothing)"

    def cell(x) -> str:
        x = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
        x = x.replace("|", "\\|").replace("\n", " ")
        return x if len(x) <= 120 else x[:119] + "…"

    lines = [x for x in path.read_text(encoding="utf-8").split("\n") if x]   # U+2028 is text
    recs = [json.loads(x) for x in lines[:k]]
    def item(x):                            # a plain line's text, not {"theme": "明月"}
        return next(iter(x.values())) if isinstance(x, dict) and len(x) == 1 else x
    rows = "\n".join(f"| {r['index']} | {cell(item(r['input']))} | {cell(first(r))} |"
                     for r in recs)
    more = f"\n\n(first {k} of {len(lines)})" if len(lines) > k else ""
    return f"| # | item | first result |\n| --- | --- | --- |\n{rows}{more}"


def _card(task: str) -> dict:
    p = Path(MODEL_DIRS[task] or WRITERS[task].default_dir()) / "card.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else \
        {"error": f"{p} is missing"}


def model_info():
    """Every shipped model's card; the Chinese chat bot's (chat-zh, beside chat) after chat's."""
    cards = {}
    for task in WRITERS:
        cards[task] = _card(task)
        if task == "chat":
            zh = Bot.zh_dir(Path(MODEL_DIRS[task] or Bot.default_dir())) / "card.json"
            if zh.exists():
                cards["chat (Chinese)"] = json.loads(zh.read_text(encoding="utf-8"))
    return cards


def _facts(card: dict) -> dict[str, str]:
    """A model card's facts, as the rows of the Models table show them."""
    if "error" in card:
        return {"corpus": card["error"]}
    m, t = card.get("model", {}), card.get("train", {})
    val = card.get("validation", {})
    return {
        "corpus": card.get("corpus", ""),
        "how it works": card.get("source", ""),
        "network": f"{m.get('cell', '?').upper()} seq2seq, emb {m.get('emb_dim')}, hidden "
                   f"{m.get('hidden')}, {m.get('enc_layers')}-layer "
                   f"{'bidirectional ' if m.get('bidirectional') else ''}encoder, "
                   f"{m.get('dec_layers')}-layer decoder, vocabulary {m.get('tgt_vocab')}",
        "parameters": f"{card.get('parameters', 0):,} ({card.get('weights_dtype', '')})",
        "training": f"{t.get('epochs')} epochs, {card.get('steps', 0):,} steps of "
                    f"{t.get('batch_size')}, {card.get('train_wall_time_min', '?')} min; "
                    f"{card.get('hardware', '')}",
        "validation perplexity": f"{val.get('ppl', float('nan')):.1f} per token",
        "rebuild": f"`{card.get('rebuild', '')}`"}


def models_table(cards: dict) -> str:
    """Every model card in one readable table: a column per model, a row per fact (what it
    learned from, its size, how well it does, how to rebuild it)."""
    facts = {task: _facts(card) for task, card in cards.items()}
    rows = dict.fromkeys(k for f in facts.values() for k in f)

    def cell(x: str) -> str:       # a card's text, never markup: <form> stays visible
        return x.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
    head = "| | " + " | ".join(f"**{t}**" for t in facts) + " |\n|---" + "|---" * len(facts) + "|"
    body = "\n".join(f"| {r} | " + " | ".join(cell(f.get(r, "")) for f in facts.values()) + " |"
                     for r in rows)
    return f"{head}\n{body}"


def curves(cards: dict) -> tuple:
    """Validation perplexity per epoch and the gradient norm before clipping per step, of
    every model whose card has them, as data frames for gr.LinePlot."""
    import pandas as pd
    val = [{"epoch": r["epoch"] + 1, "perplexity": r["val_ppl"], "model": task}
           for task, c in cards.items() for r in c.get("history", []) if "val_ppl" in r]
    grad = [{"step": r["step"], "gradient norm": r["grad_norm"], "model": task}
            for task, c in cards.items() for r in c.get("curve", []) if "grad_norm" in r]
    return (pd.DataFrame(val, columns=["epoch", "perplexity", "model"]),
            pd.DataFrame(grad, columns=["step", "gradient norm", "model"]))


# Wide tables (the Models table, a batch preview) scroll inside their block at phone width,
# and a table's first column (the row names) never breaks inside a word.
CSS = """
.prose table { display: block; overflow-x: auto; }
.prose td:first-child { white-space: nowrap; }
"""


def build_app(poem_dir: str | Path | None = None, tune_dir: str | Path | None = None,
              chat_dir: str | Path | None = None, concurrency: int = 1) -> gr.Blocks:
    """The Blocks app; each *_dir overrides that task's shipped model folder. `concurrency`:
    requests one endpoint runs at once (the endpoints run beside each other anyway)."""
    for task, d in (("chat", chat_dir), ("poem", poem_dir), ("tune", tune_dir)):
        MODEL_DIRS[task] = Path(d) if d else None
    with gr.Blocks(title="Shiyu 诗语", delete_cache=(SCRATCH_AGE, SCRATCH_AGE)) as demo:
        gr.Markdown("# Shiyu 诗语\nChat, classical Chinese poems and folk tunes from one "
                    "LSTM seq2seq core, trained on public corpora, running on a CPU.")
        with gr.Tabs(overflow_behavior="wrap"):      # all tabs in sight at phone width
            with gr.Tab("Chat 聊天"):
                chatbot = gr.Chatbot(label="Shiyu 诗语", height=440, buttons=["copy"])
                box = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                                 submit_btn=True, max_length=2000)
                gr.Examples([["hi! how was your weekend?"], ["what kind of music do you like?"],
                             ["你好！你叫什么名字？"]], [box], label="Examples")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        ctemp = gr.Slider(*LIMITS["chat temperature"], value=Bot.TEMPERATURE,
                                          step=0.05, label="Temperature")
                        cseed = gr.Textbox(value="", label="Seed (empty = random)")
                box.submit(chat_turn, [box, chatbot, ctemp, cseed], [box, chatbot],
                           api_visibility="private", show_progress="hidden").then(
                    None, js="() => { window.shiyuTurns = (window.shiyuTurns || 0) + 1; }")
                # (a count of finished turns in the page, which the browser tests wait on)
                # /chat for scripts: one message in, the reply streamed out
                message = gr.Textbox(visible=False, label="message")
                answer = gr.Textbox(visible=False)
                gr.Button(visible=False).click(chat, [message, ctemp, cseed], answer,
                                               api_name="chat")
                gr.api(reply, api_name="reply")
            with gr.Tab("Poems 诗"):
                with gr.Row():
                    with gr.Column():
                        theme = gr.Textbox(label="Theme 主题", value="明月", max_length=40)
                        form = gr.Dropdown(FORM_CHOICES, value="qijue", label="Form 体裁")
                        n = gr.Slider(*LIMITS["poems"], value=1, step=1, label="Poems")
                        acrostic = gr.Textbox(value="",
                                              label="Acrostic 藏头 (one character per line)")
                        start = gr.Textbox(value="", label="Opening line(s) 首句")
                        keywords = gr.Textbox(
                            value="", max_length=40,
                            label="Keywords 关键词 (empty = planned from the theme)")
                        with gr.Row():
                            rhyme = gr.Checkbox(value=True, label="Rhyme 押韵")
                            strict = gr.Checkbox(value=False, label="Strict 平仄")
                        temperature = gr.Slider(*LIMITS["poem temperature"],
                                                value=PoemWriter.TEMPERATURE, step=0.05,
                                                label="Temperature")
                        seed = gr.Textbox(value="", label="Seed (empty = random)")
                        go = gr.Button("Write 作诗", variant="primary")
                    with gr.Column():
                        poem_out = gr.Textbox(label="Poems", lines=14, buttons=["copy"],
                                              elem_id="poems")
                        poem_notes = gr.Markdown()
                        poem_files = gr.File(label="Download .txt / .jsonl",
                                             file_count="multiple")
                poem_inputs = [theme, form, n, acrostic, start, rhyme, strict, temperature, seed,
                               keywords]
                go.click(write_poems, poem_inputs, [poem_out, poem_notes, poem_files],
                         api_name="write_poems")
                T = PoemWriter.TEMPERATURE
                gr.Examples([["明月", "qijue", 1, "", "", True, False, T, "1", ""],
                             ["秋夜", "wulv", 1, "", "", True, False, T, "2", "蟋蟀 砧声"],
                             ["春", "wujue", 1, "春夏秋冬", "", True, False, T, "3", ""],
                             ["送别", "qilv", 2, "", "", True, False, T, "4", ""]],
                            poem_inputs, label="Examples 示例",
                            example_labels=["明月 · 七绝", "秋夜 · 五律 · 蟋蟀 砧声",
                                            "春 · 五绝 · 藏头 春夏秋冬", "送别 · 七律 × 2"])
            with gr.Tab("Tunes 曲"):
                with gr.Row():
                    with gr.Column():
                        meter = gr.Dropdown(list(METERS), value="6/8", label="Meter")
                        key = gr.Textbox(value="Dmaj", label="Key (ABC, e.g. D, Ador, Emin, Gmix)")
                        rhythms = [("(the meter's most common)", "")] + \
                            known_rhythms(_card("tune"))
                        rhythm = gr.Dropdown(rhythms, value="jig", label="Rhythm")
                        forms = [("(the rhythm's usual form)", "")] + list(TUNE_FORMS)
                        tform = gr.Dropdown(forms, value="",
                                            label="Form (AABB: two repeated 8-bar parts)")
                        tstart = gr.Textbox(value="",
                                            label="Opening bar(s) in ABC, e.g. |:A2B c2d|")
                        tn = gr.Slider(*LIMITS["tunes"], value=1, step=1, label="Tunes")
                        ttemp = gr.Slider(*LIMITS["tune temperature"], value=1.0, step=0.05,
                                          label="Temperature")
                        ttempo = gr.Slider(*LIMITS["tempo"], value=120, step=1,
                                           label="Tempo (quarter notes a minute)")
                        tseed = gr.Textbox(value="", label="Seed (empty = random)")
                        tgo = gr.Button("Compose 作曲", variant="primary")
                    with gr.Column():
                        abc_out = gr.Code(label="ABC")
                        score = gr.HTML(label="Score")
                        audio = gr.Audio(label="Listen", type="filepath")
                        abc_file = gr.File(label="Download ABC, MIDI and WAV",
                                           file_count="multiple")
                tune_inputs = [meter, key, rhythm, tstart, tn, ttemp, tseed, tform, ttempo]
                tgo.click(write_tunes, tune_inputs, [abc_out, score, audio, abc_file],
                          api_name="write_tunes")
                gr.Examples([["6/8", "Dmaj", "jig", "", 1, 1.0, "1", "", 120],
                             ["4/4", "Gmaj", "reel", "", 1, 1.0, "2", "AABB", 160],
                             ["3/4", "Gmaj", "song", "", 1, 1.0, "3", "", 90]],
                            tune_inputs, label="Examples",
                            example_labels=["jig in D, 6/8", "reel in G, AABB, ♩ = 160",
                                            "song in G, 3/4, ♩ = 90"])
            with gr.Tab("Batch 批量"):
                gr.Markdown("One message per line or JSONL conversations (chat), one theme per "
                            "line (poems) or JSONL settings (tunes); the result is a JSONL file "
                            "with one line per input item, in order.")
                bfile = gr.File(label="Input", type="filepath")
                btask = gr.Radio(["chat", "poem", "tune"], value="poem", label="Task")
                bform = gr.Dropdown(FORM_CHOICES, value="qijue", label="Poem form")
                bn = gr.Slider(*LIMITS["results per item"], value=1, step=1, label="Per item")
                bseed = gr.Number(value=0, precision=0, minimum=LIMITS["seed"][0],
                                  maximum=LIMITS["seed"][1], label="Seed")
                bgo = gr.Button("Run")
                bout, bsum, bview = gr.File(label="Result"), gr.Markdown(), gr.Markdown()
                bgo.click(run_batch, [bfile, btask, bform, bn, bseed], [bout, bsum, bview],
                          api_name="run_batch")
                ex = Path(__file__).resolve().parent / "data" / "examples"
                gr.Examples([[str(ex / "themes.txt"), "poem", "qijue", 1, 0],
                             [str(ex / "messages.txt"), "chat", "qijue", 2, 0],
                             [str(ex / "tunes.jsonl"), "tune", "qijue", 1, 0]],
                            [bfile, btask, bform, bn, bseed], label="Examples",
                            example_labels=["4 themes → poems", "3 messages → 2 replies each",
                                            "3 tune settings → tunes"])
            with gr.Tab("Models"):
                cards = model_info()
                table = gr.Markdown(models_table(cards))
                val, grad = curves(cards)
                with gr.Row():
                    vplot = gr.LinePlot(val, x="epoch", y="perplexity", color="model",
                                        title="Validation perplexity per epoch")
                    gplot = gr.LinePlot(grad, x="step", y="gradient norm", color="model",
                                        title="Gradient norm before clipping (clip at 1.0)")
                with gr.Accordion("Model cards (JSON)", open=False):
                    info = gr.JSON(cards, label="Model cards")
                gr.Button("Reload cards", size="sm").click(
                    model_info, None, info, api_name="model_info").then(
                    lambda c: (models_table(c), *curves(c)), info, [table, vplot, gplot],
                    api_visibility="private")       # the table and plots follow the cards
    for block in demo.blocks.values():
        if isinstance(block, gr.components.Component):
            _quiet(block)
    demo.queue(max_size=32, default_concurrency_limit=concurrency)
    guard(demo, _refuse)                # the values and files of every request, checked first
    return demo


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port (0: any free one; the address "
                    "is printed when the server listens)")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="requests each endpoint runs at once (default 1)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for the models (default: torch's, one per core)")
    for task in ("chat", "poem", "tune"):
        ap.add_argument(f"--{task}-model", metavar="DIR",
                        help=f"the {task} model folder (default: the shipped one)")
    args = ap.parse_args(argv)
    if args.concurrency < 1 or args.threads < 0 or not 0 <= args.port <= 65535:
        ap.error("--concurrency must be at least 1, --threads at least 0, --port 0-65535")
    for d in (args.chat_model, args.poem_model, args.tune_model):
        if d is not None and not (Path(d) / "card.json").is_file():
            ap.error(f"{d} is not a model folder (it has no card.json)")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        ap.error(f"cannot listen on {args.host}:{args.port}: {e.strerror}")
    host, port = sock.getsockname()[:2]
    app = server(concurrency=args.concurrency, chat_dir=args.chat_model,
                 poem_dir=args.poem_model, tune_dir=args.tune_model)
    trim_memory_every()
    import uvicorn
    print(f"Shiyu is at http://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}/",
          flush=True)
    uvicorn.Server(uvicorn.Config(app)).run(sockets=[sock])


def server(**options):
    """The whole server: the OpenAI-compatible /v1 routes (chatbot/openai_api.py) with the
    Gradio app mounted beside them on one FastAPI app. `options` go to build_app."""
    api = openai_api.create_app(lambda: writer("chat"))
    demo = build_app(**options)
    app = gr.mount_gradio_app(api, demo, path="/", css=CSS, max_file_size=f"{MAX_UPLOAD_MB}mb")
    unknown_endpoint(app)
    demo.has_launched = True        # Gradio's own check of the files a request names, which only
    return app                      # launch() switches on; server/inputs.py checks them first


if __name__ == "__main__":
    main()
