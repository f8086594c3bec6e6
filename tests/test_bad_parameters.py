"""Sampling parameters out of range are refused with ValueError by every writer, before any
decoding (a NaN or huge temperature used to turn the scores into NaN, and sampling then ignored
the rules' masks)."""
import math
import re

import pytest

from chatbot.bot import Bot
from poetry.poems import PoemWriter

BAD_TEMPERATURES = [float("nan"), float("inf"), 3.5e38, 1e-300, 0.0, -1.0, "hot"]


@pytest.fixture(scope="module")
def writers(poem_model_dir, chat_model_dir):
    return PoemWriter.load(poem_model_dir), Bot.load(chat_model_dir)


@pytest.mark.parametrize("t", BAD_TEMPERATURES, ids=str)
def test_bad_temperature_is_refused(writers, t):
    poems, bot = writers
    with pytest.raises(ValueError, match="temperature"):
        poems.write("明月", form="wujue", temperature=t, seed=1)
    with pytest.raises(ValueError, match="temperature"):
        bot.reply("hi", temperature=t, seed=1)


def test_zero_candidates_and_bad_seeds_are_refused(writers):
    poems, bot = writers
    for w, call in ((poems, lambda **k: poems.write("明月", form="wujue", **k)),
                    (bot, lambda **k: bot.replies("hi", **k))):
        with pytest.raises(ValueError, match="candidates"):
            call(candidates=0, seed=1)
        with pytest.raises(ValueError, match="seed"):
            call(seed="7")
    assert math.isfinite(poems.write("明月", form="wujue", temperature=0.05, seed=1)[0]["score"])


WRONG_TYPES = {"int": 123, "None": None, "float": 1.5, "bytes": b"\xe6\x98\x8e", "list": ["x"],
               "dict": {"a": 1}, "bool": True, "object": object()}

# parameter -> (the call, a pattern the error must match: it names the parameter, the
# WRONG_TYPES taken as valid input). Every other value must be refused with that ValueError.
PARAMETERS = {
    "poem theme": (lambda w, v: w.poems.write(v, form="wujue", seed=1), "the theme", ()),
    "poem form": (lambda w, v: w.poems.write("明月", form=v, seed=1), "form", ()),
    "poem acrostic": (lambda w, v: w.poems.write("明月", form="wujue", acrostic=v, seed=1),
                      "acrostic", ("None",)),
    "poem start": (lambda w, v: w.poems.write("明月", form="wujue", start=v, seed=1),
                   "start", ("None",)),              # ["x"]: a list of lines, not Chinese
    "poem keywords": (lambda w, v: w.poems.write("明月", form="wujue", keywords=v, seed=1),
                      "keyword", ("None",)),         # ["x"]: no keyword the model knows
    "poem rhyme": (lambda w, v: w.poems.write("明月", form="wujue", rhyme=v, seed=1),
                   "rhyme", ("bool",)),
    "poem tones": (lambda w, v: w.poems.write("明月", form="wujue", tones=v, seed=1),
                   "tones", ("None",)),
    "poem plan": (lambda w, v: w.poems.write("明月", form="wujue", plan=v, seed=1),
                  "plan", ("bool",)),
    "poem rules": (lambda w, v: w.poems.write("明月", form="wujue", rules=v, seed=1),
                   "rules", ("bool",)),
    "poem n": (lambda w, v: w.poems.write("明月", form="wujue", n=v, seed=1), "n must",
               ("int",)),                            # 123: capped with a warning
    "poem candidates": (lambda w, v: w.poems.write("明月", form="wujue", candidates=v, seed=1),
                        "candidates", ("None",)),
    "poem seed": (lambda w, v: w.poems.write("明月", form="wujue", seed=v), "seed",
                  ("int", "None")),
    "poem temperature": (lambda w, v: w.poems.write("明月", form="wujue", temperature=v,
                                                    seed=1), "temperature", ("float", "None")),
    "tune meter": (lambda w, v: w.tunes.write(v, "D", seed=1), "meter", ()),
    "tune key": (lambda w, v: w.tunes.write("6/8", v, seed=1), "the key", ()),
    "tune rhythm": (lambda w, v: w.tunes.write("6/8", "D", rhythm=v, seed=1), "the rhythm",
                    ("None",)),
    "tune form": (lambda w, v: w.tunes.write("6/8", "D", form=v, seed=1), "the form",
                  ("None",)),
    "tune start": (lambda w, v: w.tunes.write("6/8", "D", start=v, seed=1),
                   "the opening bars", ("None",)),
    "tune n": (lambda w, v: w.tunes.write("6/8", "D", n=v, seed=1), "n must", ("int",)),
    "tune rules": (lambda w, v: w.tunes.write("6/8", "D", rules=v, seed=1), "rules",
                   ("bool",)),
    "chat message": (lambda w, v: w.bot.replies(v, seed=1), "conversation",
                     ("list",)),                     # ["x"]: a conversation of one turn
    "chat n": (lambda w, v: w.bot.replies("hi", n=v, seed=1), "n must", ("int",)),
    "chat top_p": (lambda w, v: w.bot.replies("hi", top_p=v, seed=1), "top_p", ()),
    "chat candidates": (lambda w, v: w.bot.replies("hi", candidates=v, seed=1), "candidates",
                        ("None",)),
    "chat temperature": (lambda w, v: w.bot.replies("hi", temperature=v, seed=1),
                         "temperature", ("float", "None")),
}


@pytest.fixture(scope="module")
def all_writers(writers, tune_model_dir):
    from types import SimpleNamespace
    from poetry.tunes import TuneWriter
    poems, bot = writers
    return SimpleNamespace(poems=poems, bot=bot, tunes=TuneWriter.load(tune_model_dir))


@pytest.mark.filterwarnings("ignore::UserWarning")         # n=123 is capped, with a warning
@pytest.mark.parametrize("parameter", PARAMETERS)
def test_each_parameter_refuses_wrong_types_by_name(all_writers, parameter):
    """Every parameter of every writer, given each wrong type: the documented ValueError whose
    one-line message names the parameter, or, for the few values that are valid input, a
    result. A writer that ignored the value, or failed with another exception, fails here."""
    call, names, valid = PARAMETERS[parameter]
    for kind, value in WRONG_TYPES.items():
        if kind in valid:
            out = call(all_writers, value)
            assert isinstance(out, list) and out, (parameter, kind)
            continue
        with pytest.raises(ValueError) as e:
            call(all_writers, value)
        message = str(e.value)
        assert re.search(names, message) and "\n" not in message, (parameter, kind, message)


@pytest.mark.parametrize("start", ["A/0", "A0", "A2/0|", "B/00"])
def test_zero_durations_are_refused(start):
    """A zero-length note in a tune opening was a ZeroDivisionError (Fraction(1, 0))."""
    from poetry.tunes import TuneWriter
    with pytest.raises(ValueError, match="lasts more than nothing"):
        TuneWriter.load().write("6/8", "D", start=start, seed=1)
