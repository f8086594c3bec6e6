"""Corpus figures of a tune (poetry.tunes.style): form, final, out-of-mode notes, range."""
import pytest

from poetry.tunes.abc import Key
from poetry.tunes.style import STYLES, figures, form_of, parts, pitch_name, style_of

A = "c6|d6|e6|f6|g6|a6|b6|"          # seven bars of 6/8


@pytest.mark.parametrize("body, form", [
    ("|:G|" + A + "c'6::" + A + "c5:|", "AABB"),                           # pickup, signs
    ("|:" + A + "[1c'6:|[2c6|:" + A + "[1d6:|[2C6|]", "AABB"),             # 1st/2nd endings
    (A + "c'6|" + A + "=c6|" + "e6|" * 7 + "f6|" + "e6|" * 7 + "c6|]", "AABB"),   # written out
    (A + "c'6||" + "e6|" * 7 + "c6|]", "AB"),
    (A + "c'6|" + A + "c6|]", "free"),                                      # one part twice only
    ("|:" + A + "c'6:|" + "e6|" * 7 + "c6|]", "free"),                      # A repeated, B not
    ("c6|d6|e6|c6|]", "free"),
])
def test_form_of(body, form):
    assert form_of(body, "6/8") == form, parts(body, "6/8")


def test_figures_in_the_tunes_key():
    fig = figures("|:A|d2ef2g|a2=c'b2a:|", "6/8", Key("D", "maj"))
    assert fig["notes"] == 9 and fig["out_of_mode"] == 1            # =c' is C natural in D
    assert not fig["ends_tonic"] and fig["repeats"] and fig["bars"] == 3
    assert fig["low"] == 69 and fig["high"] == 84                    # A and c'
    minor = figures("c2=B c3|_B2c d3|]", "6/8", Key("C", "min"))  # =B leaves C minor; _B not
    assert minor["out_of_mode"] == 1 and minor["ends_tonic"] is False
    assert figures("d2ef3|d6|]", "6/8", Key("D", "dor"))["ends_tonic"]
    assert not figures("d2ef3|^d6|]", "6/8", Key("D", "dor"))["ends_tonic"]


def test_pitch_names_and_styles():
    assert [pitch_name(m) for m in (55, 60, 72, 83, 95, 61)] == ["G,", "C", "c", "b", "b'", "^C"]
    for name, st in STYLES.items():
        assert st.form in ("AABB", "AB", "free") and st.high - st.low >= 12, name  # a tonic in any key
        assert 0 <= st.out_of_mode < 0.2
    assert style_of("no such rhythm") == style_of("other")
