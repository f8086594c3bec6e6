"""What the page's actions do: the chat, poem and tune handlers behind the app's endpoints
(/chat, /reply, /write_poems, /write_tunes), and what they share with the batch and models
handlers: the writers (each task's model, loaded once per process), the checks of every
number against the page's LIMITS, and user errors refused as one message and one log line.
"""
from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import gradio as gr

from chatbot import openai_api
from chatbot.bot import Bot
from poetry.poems import MAX_N as MAX_POEMS
from poetry.poems import PoemWriter
from poetry.poems.verse import FORMS
from poetry.tunes import MAX_N as MAX_TUNES
from poetry.tunes import TuneWriter
from poetry.tunes.render import TEMPO
from server.files import scratch
from shared.cli import is_number, shown

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
    return component                            # make Gradio write a .pyi beside its module


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
