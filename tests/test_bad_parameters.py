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
