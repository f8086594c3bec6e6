"""Sampling parameters out of range are refused with ValueError by every writer, before any
decoding (a NaN or huge temperature used to turn the scores into NaN, and sampling then ignored
the rules' masks)."""
import math

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


WRONG_TYPES = [123, None, 1.5, b"\xe6\x98\x8e", ["x"], {"a": 1}, True, object()]


@pytest.mark.parametrize("value", WRONG_TYPES, ids=lambda v: type(v).__name__)
def test_wrong_types_are_value_errors(writers, value):
    """Every text parameter of every writer: a wrong type is the documented ValueError (it was
    an AttributeError or TypeError for 36 of 200 such calls), or is used as given."""
    from poetry.tunes import TuneWriter
    poems, bot = writers
    tunes = TuneWriter.load()
    calls = [lambda v: poems.write(v, form="wujue", seed=1),
             lambda v: poems.write("明月", form=v, seed=1),
             lambda v: poems.write("明月", form="wujue", acrostic=v, seed=1),
             lambda v: poems.write("明月", form="wujue", start=v, seed=1),
             lambda v: poems.write("明月", form="wujue", keywords=v, seed=1),
             lambda v: tunes.write(v, "D", seed=1),
             lambda v: tunes.write("6/8", v, seed=1),
             lambda v: tunes.write("6/8", "D", rhythm=v, seed=1),
             lambda v: tunes.write("6/8", "D", form=v, seed=1),
             lambda v: tunes.write("6/8", "D", start=v, seed=1),
             lambda v: bot.replies(v, seed=1)]
    for call in calls:
        try:
            call(value)
        except ValueError:
            pass


@pytest.mark.parametrize("start", ["A/0", "A0", "A2/0|", "B/00"])
def test_zero_durations_are_refused(start):
    """A zero-length note in a tune opening was a ZeroDivisionError (Fraction(1, 0))."""
    from poetry.tunes import TuneWriter
    with pytest.raises(ValueError, match="lasts more than nothing"):
        TuneWriter.load().write("6/8", "D", start=start, seed=1)
