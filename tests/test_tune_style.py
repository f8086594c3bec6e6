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


# -- phrases -------------------------------------------------------------------------------------
def test_phrase_counts_read_a_jig_as_a_player_would():
    from poetry.tunes.style import phrase_counts
    # A part: bars 5-6 restate bars 1-2 with one note changed; bar 4 lands on G (the dominant)
    # on its last beat, the part on c. B part: bars 7-8 are A's; one bar of one pitch, one
    # with a rest, one dotted.
    a = "|:cde c2G|ABc d2e|fed cBA|GAB G3|cde c2A|ABc d2e|fed edB|c3 c3:|"
    b = "|:ggg g3|a2g f2e|d3/2e/2f g2z|fed BAF|gfe dcB|AGF EDC|fed edB|c3 c3:|"
    c = phrase_counts((a + b).replace(" ", "").replace(":||:", "::"), "6/8")
    assert c["parts"] == 2
    assert c["part_ends_tonic"] == 2                # both land on c
    assert c["bar4_tonic_or_dominant"] == 1         # A's bar 4 lands on G, B's on B
    assert c["restates_opening"] == 1               # A: `cde c2A` for `cde c2G`
    assert c["b_bars_from_a"] == 2                  # `fed edB`, `c3 c3`
    # one pitch: `ggg g3` and the two closing `c3 c3`
    assert (c["bars"], c["one_pitch_bars"], c["rest_bars"], c["dotted_bars"]) == (16, 3, 1, 1)


def test_phrase_landing_skips_a_pickup_after_the_last_beat():
    from poetry.tunes.style import phrase_counts
    body = "|:" + "c6|" * 7 + "c2Bc2G:|"            # lands on c, then a pickup G
    assert phrase_counts(body, "6/8")["part_ends_tonic"] == 1
    assert phrase_counts("|:" + "c6|" * 7 + "cBcG3:|", "6/8")["part_ends_tonic"] == 0


def test_phrase_range_holds_the_corpus_own_rate():
    from poetry.tunes.style import phrase_counts, phrase_range, phrase_rates
    tunes = ["|:cde c2G|ABc d2e|fed cBA|GAB G3|cde c2G|ABc d2e|fed edB|c3 c3:|",
             "|:gfe dcB|AGF EDC|fed edB|GAB G3|gfe dcB|AGF EDC|fed edB|G3 G3:|"]
    counts = [phrase_counts(t.replace(" ", ""), "6/8") for t in tunes]
    low, high = phrase_range(counts, 10)["part_ends_tonic"]
    assert low <= phrase_rates(counts)["part_ends_tonic"] <= high
    assert 0 <= low < high <= 1
