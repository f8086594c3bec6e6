"""What the page's actions do: the poem and tune handlers behind the app's endpoints
(/write_poems, /write_tunes), and what they share with the chat, batch and models handlers:
the writers (each task's model, loaded once per process), the checks of every number against
the page's LIMITS, and user errors refused as one message and one log line.

An endpoint refuses bad input by raising it (a script gets the error); the page's own events
run the same handlers through `on_page`, which shows the message and leaves every output as
it was.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
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
from poetry.tunes import MAX_N as MAX_TUNES
from poetry.tunes import TuneWriter
from poetry.tunes.render import TEMPO
from server.files import scratch
from server.show import poem_details, poem_text, poem_title, tune_details
from shared.cli import is_number, shown

WRITERS = {"chat": Bot, "poem": PoemWriter, "tune": TuneWriter}
# the model folder of each task (None = its shipped model), where no app says otherwise
MODEL_DIRS: dict[str, Path | None] = {task: None for task in WRITERS}
# the folders of the app whose handler runs in this thread (`using`): build_app binds its
# handlers to its own folders, leaving MODEL_DIRS as it was
_APP = threading.local()


def model_dirs() -> dict[str, Path | None]:
    """The model folders in force here: the running app's (`using`), else MODEL_DIRS."""
    return getattr(_APP, "dirs", None) or MODEL_DIRS


@contextlib.contextmanager
def using(dirs: dict[str, Path | None]):
    """`dirs` as this thread's model folders for the block's duration."""
    before = getattr(_APP, "dirs", None)
    _APP.dirs = dirs
    try:
        yield
    finally:
        _APP.dirs = before


def bound(fn, dirs: dict[str, Path | None]):
    """`fn` run with `dirs` as its model folders; a generator's each step too (Gradio runs
    the steps of a streaming handler in worker threads, one at a time)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            with using(dirs):
                it = fn(*args, **kwargs)
            try:
                while True:
                    with using(dirs):
                        try:
                            x = next(it)
                        except StopIteration as e:
                            return e.value
                    yield x
            finally:
                with using(dirs):
                    it.close()
        return steps

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with using(dirs):
            return fn(*args, **kwargs)
    return call


_LOADING = threading.Lock()


@lru_cache(maxsize=None)
def _cached(task: str, model_dir: Path | None):
    return WRITERS[task].load(model_dir)


def _load(task: str, model_dir: Path | None):
    with _LOADING:                # two first requests at once load the model once
        return _cached(task, model_dir)


def writer(task: str, dirs: dict[str, Path | None] | None = None):
    """The task's writer, loaded once per process and model folder (`dirs`'s, else the
    folders in force here)."""
    return _load(task, (dirs or model_dirs())[task])


log = logging.getLogger("shiyu.app")


def _refuse(message: str) -> gr.Error:
    """A user error: shown on the page as it is, and one line in the server log (Gradio
    would print a traceback for it)."""
    log.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def tell(error: gr.Error) -> None:
    """Show a refusal on the page as an error toast, its message as it is. Raised instead, it
    would also mark every output of the event with an error badge over its content."""
    from gradio.helpers import log_message
    log_message(error.message, title=error.title, level="error", duration=error.duration)


def on_page(handler):
    """`handler` as the page's own event runs it: a refusal (gr.Error) is shown (`tell`) and
    every output keeps what it showed. The endpoint scripts call keeps `handler` itself,
    which raises, so that the script gets the error."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def page(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error as e:
                tell(e)
                yield gr.skip()
    else:
        @functools.wraps(handler)
        def page(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except gr.Error as e:
                tell(e)
                return gr.skip()
    return page


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


def write_poems(theme, form, n, acrostic, start, rhyme, strict, temperature, seed,
                keywords=""):
    """Streams the first poem once it is chosen, then shows all n poems (title and verses) and,
    under them, their details (keywords, score, rules that gave way) and the writer's notes,
    with the downloads (poems.txt as shown, poems.jsonl a poem a line, details included).
    `keywords`: the plan (empty = sampled from the theme for each candidate)."""
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
            title = None
            while True:
                try:
                    with notes() as got:
                        partial = next(parts)
                except StopIteration as done:
                    poems = done.value
                    break
                finally:
                    said += got
                title = title or poem_title(theme, {"theme": "", "form": form})
                yield poem_text(title, partial), "", None
        else:
            with notes() as said:
                poems = writer("poem").write(theme, n=n, **kw)
        said = list(dict.fromkeys(said))
    except ValueError as e:
        raise _user_error(e) from None
    text = "\n\n".join(poem_text(poem_title(theme, p), p["poem"]) for p in poems)
    txt = scratch("poems.txt")
    txt.write_text(text + "\n", encoding="utf-8")
    jsonl = txt.with_suffix(".jsonl")
    jsonl.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in poems),
                     encoding="utf-8")
    yield text, poem_details(poems, said), [str(txt), str(jsonl)]


def write_tunes(meter, key, rhythm, start, n, temperature, seed, form="", tempo=120):
    """`form`: AABB, AB or free; empty = the rhythm's usual form. `tempo`: quarter notes a
    minute, written into the ABC (Q:) and played by the MIDI and the audio. Returns the ABC, a
    score of every tune (scaled to the column) under a line of its details (rhythm, form,
    score), the first tune's audio, and the downloads (the ABC, and a MIDI and a WAV file a
    tune)."""
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
    score = "".join(tune_details(i, t, len(tunes)) + fit_width(svg)
                    for i, (t, svg) in enumerate(zip(tunes, svgs), 1))
    return abc, score, files[2], files       # the player plays the first tune's WAV download:
                                             # Gradio caches one copy of it, not two
