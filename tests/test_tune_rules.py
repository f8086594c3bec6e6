"""Tune rules: plain checks, and TuneConstraint driven by a fake decoder with random logits."""
import warnings

import pytest
import torch

from poetry.tunes import abc
from poetry.tunes.abc import METERS
from poetry.tunes.rules import (START, TuneConstraint, tune_rules, check_ending, check_structure,
                               check_tune, copied_windows, repeat_step, window_hashes)
from shared.tokenizers import RegexTokenizer

NOTES = [acc + n for n in ("G,", "A,", "B,", "C", "D", "E", "F", "G", "A", "B",
                           "c", "d", "e", "f", "g", "a", "b", "c'") for acc in ("", "^", "_", "=")]
DURS = ["2", "3", "4", "6", "8", "12", "16", "/2", "3/2", "/4", "3/4", "5", "7/2"]
TOKENS = list(abc.BARS) + ["[1", "[2", "(2", "(3", "(4", "z", "-"] + NOTES + DURS


@pytest.fixture(scope="module")
def tok():
    return RegexTokenizer(abc.TOKEN_PATTERN, TOKENS)


def decode(constraint, tok, n_rows, logits_fn, steps=3000, seed=0):
    """A fake decoder: sample from masked logits until every row emits <eos>; a chain's bias
    is added to the logits as the real decoder adds it."""
    gen = torch.Generator().manual_seed(seed)
    mask = constraint.begin(torch.arange(n_rows))
    out = [[] for _ in range(n_rows)]
    done = torch.zeros(n_rows, dtype=torch.bool)
    for t in range(steps):
        assert mask.any(-1).all(), "a row has no allowed token"
        logits = logits_fn(t, out, gen)
        bias = constraint.bias() if hasattr(constraint, "bias") else None
        if bias is not None:
            logits = logits.index_put_(bias[:2], bias[2], accumulate=True)
        logits = logits.masked_fill(~mask, float("-inf"))
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen).view(-1)
        nxt = torch.where(done, torch.zeros_like(nxt), nxt)
        for r in range(n_rows):
            if not done[r] and nxt[r] != tok.eos_id:
                out[r].append(int(nxt[r]))
        done |= nxt.eq(tok.eos_id)
        mask = constraint.step(nxt)
        if done.all():
            return [tok.decode(o) for o in out]
    raise AssertionError("rows did not finish")


def random_logits(tok, scale=3.0):
    return lambda t, out, gen: torch.randn(len(out), tok.vocab_size, generator=gen) * scale


def test_repeat_step():
    s = repeat_step(START, "|:")
    assert s == (True, 0, False) and repeat_step(s, "|:") is None
    s1 = repeat_step(s, "[1")
    assert repeat_step(s1, "::") is None and repeat_step(s1, "||") is None
    s2 = repeat_step(s1, ":|")
    assert s2[2] and repeat_step(s2, "|") is None and repeat_step(s2, "[2") == (False, 2, False)
    assert repeat_step(START, ":|") is None and repeat_step(START, "[1") is None


def test_check_tune():
    assert not check_tune("G|:c3cde|(3cdec2:|", "6/8")
    assert not check_tune("c6|[1:|", "6/8") == []        # garbage is reported, not raised
    assert not check_tune("c3cd|c6|]", "6/8")             # a short first bar is a pickup
    assert check_tune("c6|c5|c6|]", "6/8")                # short interior bar
    assert check_tune("c6|c7|]", "6/8")                   # long bar
    assert check_tune("|:c6|c6|]", "6/8")                 # unclosed repeat
    assert check_tune("c6|c6", "6/8")                     # no closing bar line
    assert check_tune("(3cd2e2c2|]", "2/4")               # mixed tuplet
    assert check_tune("c6-|z6|]", "6/8")                  # tie to a rest
    assert check_structure(abc.tokenize("|:c|[1d:|[2e|]")) is None
    assert check_structure(abc.tokenize("|:c|[1d:|e|]"))


@pytest.mark.parametrize("max_bars,min_bars", [(16, 4), (8, 8), (3, 1)])
def test_random_decoding_obeys_the_rules(tok, max_bars, min_bars):
    meters = list(METERS)
    c = TuneConstraint(tok, meters, max_bars=max_bars, min_bars=min_bars)
    bodies = decode(c, tok, len(meters), random_logits(tok), seed=max_bars)
    for meter, body in zip(meters, bodies):
        assert not check_tune(body, meter), (meter, body)
        n = len(abc.bars(abc.tokenize(body)))
        assert min_bars <= n <= max_bars, (n, body)


def test_random_tunes_parse_in_music21(tok):
    from music21 import converter
    meters = ["6/8", "4/4", "3/4", "9/8"]
    c = TuneConstraint(tok, meters, max_bars=8, min_bars=4)
    bodies = decode(c, tok, len(meters), random_logits(tok), seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (meter, body) in enumerate(zip(meters, bodies)):
            score = converter.parse(abc.build_tune(meter, "Cmaj", "jig", body, i + 1),
                                    format="abc", forceSource=True)
            assert score.flatten().notes


def test_eager_and_reluctant_models_still_end_properly(tok):
    eos, bars = tok.eos_id, [tok.stoi[b] for b in abc.BARS]

    def eager(t, out, gen):                # wants to stop at once
        x = torch.randn(len(out), tok.vocab_size, generator=gen)
        x[:, eos] += 20
        x[:, bars] += 10
        return x

    def reluctant(t, out, gen):            # never wants to stop, nor to close
        x = torch.randn(len(out), tok.vocab_size, generator=gen)
        x[:, eos] -= 30
        x[:, [tok.stoi["|]"], tok.stoi[":|"]]] -= 30
        return x

    for fn in (eager, reluctant):
        c = TuneConstraint(tok, ["6/8", "2/4"], max_bars=12, min_bars=4)
        for meter, body in zip(["6/8", "2/4"], decode(c, tok, 2, fn)):
            assert not check_tune(body, meter)
            assert 4 <= len(abc.bars(abc.tokenize(body))) <= 12


def test_prefix_is_forced_and_checked(tok):
    prefix = tok.encode("|:G|c3cde|")
    body = decode(tune_rules(tok, ["6/8"], [prefix], max_bars=8), tok, 1, random_logits(tok))[0]
    assert body.startswith("|:G|c3cde|") and not check_tune(body, "6/8")
    c = TuneConstraint(tok, ["6/8"], max_bars=8)
    assert c.check_prefix(prefix) is None
    assert "breaks" in c.check_prefix(tok.encode("c8|"))      # 8 eighths in 6/8
    assert c.check_prefix(tok.encode(":|")) is not None


def test_no_four_bar_copy(tok):
    train = "c2cdec|d2dedc|e2efge|f2fgfe|g2gage|a2abag|b2bc'ba|c'6|]"
    windows = window_hashes(train)
    target = tok.encode(train)

    def parrot(t, out, gen):               # a model that would recite the training tune
        x = torch.randn(len(out), tok.vocab_size, generator=gen)
        for r, seq in enumerate(out):
            if len(seq) < len(target):
                x[r, target[len(seq)]] += 12
        return x

    free = decode(TuneConstraint(tok, ["6/8"] * 4, max_bars=8), tok, 4, parrot)
    assert any(copied_windows(b, windows) for b in free)          # without the ban: copies
    c = TuneConstraint(tok, ["6/8"] * 4, max_bars=8, windows=windows)
    for body in decode(c, tok, 4, parrot):
        assert copied_windows(body, windows) == 0 and not check_tune(body, "6/8")


def test_reorder_copies_rows(tok):
    c = TuneConstraint(tok, ["6/8"], max_bars=8)
    c.begin(torch.zeros(2, dtype=torch.long))
    c.step(torch.tensor(tok.encode("c") * 2))
    c.reorder(torch.tensor([0, 0]))
    c.step(torch.tensor(tok.encode("6") + tok.encode("2")))
    assert c.rows[0].used != c.rows[1].used and c.rows[0].content != c.rows[1].content


# -- form, final note, pitches --------------------------------------------------------------
def last_note(body: str) -> str:
    return [t for t in abc.tokenize(body) if abc.token_kind(t) == "note"][-1]


@pytest.mark.parametrize("form", ["AABB", "AB"])
def test_random_decoding_keeps_the_form_and_ends_on_the_tonic(tok, form):
    from poetry.tunes.style import form_of, parts
    meters = list(METERS)
    for seed in (0, 1):
        c = TuneConstraint(tok, meters, forms=[form] * len(meters))
        for meter, body in zip(meters, decode(c, tok, len(meters), random_logits(tok), seed=seed)):
            assert not check_tune(body, meter), (meter, body)
            assert form_of(body, meter) == form, (meter, body, parts(body, meter))
            assert last_note(body).lstrip("=") in ("C", "c", "C,", "c'"), body
            assert (":|" in body) == (form == "AABB")


def test_free_tunes_end_on_the_tonic_even_when_forced_to_close(tok):
    def reluctant(t, out, gen):            # never wants to stop nor to play C
        x = torch.randn(len(out), tok.vocab_size, generator=gen)
        x[:, tok.eos_id] -= 30
        x[:, [tok.stoi[n] for n in ("C", "c", "=C", "=c", "c'", "=c'")]] -= 30
        return x
    meters = ["6/8", "2/4", "3/4", "4/4"]
    c = TuneConstraint(tok, meters, max_bars=6, min_bars=2, forms=["free"] * 4)
    for meter, body in zip(meters, decode(c, tok, 4, reluctant)):
        assert not check_tune(body, meter) and last_note(body).lstrip("=")[0] in "Cc", body


def test_form_prefix_and_unknown_form(tok):
    c = TuneConstraint(tok, ["6/8"], forms=["AABB"])
    assert c.check_prefix(tok.encode("|:G|c3cde|")) is None
    assert c.check_prefix(tok.encode("c3cde|")) is not None            # AABB opens with |:
    assert TuneConstraint(tok, ["6/8"], forms=["AB"]).check_prefix(tok.encode("|:c6|"))
    assert c.check_prefix(tok.encode("|:" + "c6|" * 7 + "c6||")) is not None   # bar 8: :| or ::
    assert c.check_prefix(tok.encode("|:" + "c6|" * 7 + "c6::")) is None
    with pytest.raises(ValueError, match="unknown form 'ABAB'"):
        TuneConstraint(tok, ["6/8"], forms=["ABAB"])


def test_first_and_second_endings_replay_the_eighth_bar(tok):
    from poetry.tunes.style import form_of
    c = TuneConstraint(tok, ["6/8"], forms=["AABB"])
    body = "|:G|" + "c6|" * 7 + "[1d6:|[2c6|:" + "e6|" * 7 + "[1d6:|[2c5|]"
    assert c.check_prefix(tok.encode(body)) is None and form_of(body, "6/8") == "AABB"
    assert c.check_prefix(tok.encode("|:" + "c6|" * 6 + "[1")) is not None   # only in bar 8


def test_pitch_rules_keep_range_and_cap_out_of_mode_notes(tok):
    from poetry.tunes.rules import Pitches
    rates = [0.0, 0.05]
    c = tune_rules(tok, ["4/4", "4/4"], [[], []], max_bars=12, min_bars=12,
                   pitches=[Pitches("min", 55, 76, r) for r in rates])
    key = abc.Key("C", "min")
    for rate, body in zip(rates, decode(c, tok, 2, random_logits(tok), seed=3)):
        notes = [abc.note_pitch(t, key) for t in abc.tokenize(body) if abc.token_kind(t) == "note"]
        assert all(55 <= p <= 76 for p, _ in notes), body
        out = [k for k, (_, ok) in enumerate(notes) if not ok]
        assert len(out) <= rate * len(notes) and all(k >= 1 / max(rate, 1e-9) - 1 for k in out)
        assert rate == 0 or out, body      # random logits do use the allowance


def test_check_ending():
    assert check_ending("G|c6|c2z4|]") is None and check_ending("|:c6:|[2d4c2:|") is None
    assert check_ending("c6|d4c2||c4C2|]") is None             # C, and c both are the tonic
    assert "not the tonic" in check_ending("c6|c4d2|]")
    assert "not the tonic" in check_ending("c6|z6|]")          # the last bar holds a note
    assert "shorter than a quarter" in check_ending("c6|d5c|]")
    assert "shorter than a quarter" in check_ending("c6|d4cz|]")    # a rest does not lengthen
    assert "shorter than an eighth" in check_ending("c6|d3d/2d/2c2|]")
    assert "tuplet" in check_ending("c6|(3dedc2|]")


@pytest.mark.parametrize("form", ["free", "AABB", "AB"])
def test_every_tune_ends_on_a_long_tonic_in_a_plain_last_bar(tok, form):
    """The ending promised in docs/tunes.md, for every meter and form, whether the tune stops
    of its own accord (random logits), wants to stop at once, or never wants to."""
    eos, bars = tok.eos_id, [tok.stoi[b] for b in abc.BARS]

    def eager(t, out, gen):
        x = torch.randn(len(out), tok.vocab_size, generator=gen) * 3
        x[:, [eos] + bars] += 10
        return x

    def reluctant(t, out, gen):
        x = torch.randn(len(out), tok.vocab_size, generator=gen) * 3
        x[:, [eos, tok.stoi["|]"], tok.stoi[":|"]]] -= 30
        return x

    meters = list(METERS)
    for seed, fn in enumerate([random_logits(tok), random_logits(tok), eager, reluctant]):
        c = TuneConstraint(tok, meters, forms=[form] * len(meters), max_bars=10, min_bars=2)
        for meter, body in zip(meters, decode(c, tok, len(meters), fn, seed=seed)):
            assert not check_tune(body, meter), (meter, body)
            assert check_ending(body) is None, (meter, check_ending(body), body)


def test_a_pickup_does_not_let_the_last_bar_end_short_on_a_short_note(tok):
    """A form's last bar may be short by its pickup; it still ends as check_ending asks."""
    prefixes = [tok.encode(p) for p in ("|:G|", "|:GA|", "|:G/2A/2|", "|:(3GAB|")]
    meters = ["6/8", "2/4", "3/4", "4/4"]
    for seed in range(3):
        c = tune_rules(tok, meters, prefixes, forms=["AABB"] * 4)
        for meter, body in zip(meters, decode(c, tok, 4, random_logits(tok), seed=seed)):
            assert not check_tune(body, meter) and check_ending(body) is None, (meter, body)


# -- phrase rules (a bias, not a mask) --------------------------------------------------------
@pytest.mark.parametrize("meter", ["6/8", "2/2", "2/4"])
def test_phrase_weights_move_their_figures_and_the_rules_still_hold(tok, meter):
    from poetry.tunes.rules import Phrase
    from poetry.tunes.style import form_of, phrase_counts, phrase_rates
    n = 12
    def untied(t, out, gen):               # random, without ties (a tie into bar 5 changes
        x = torch.randn(len(out), tok.vocab_size, generator=gen) * 3   # its first note)
        x[:, tok.stoi["-"]] -= 30
        return x
    rates = {}
    for name, ph in {"none": Phrase(), "strong": Phrase(restate=40, share=40, land=40)}.items():
        chain = tune_rules(tok, [meter] * n, [()] * n, forms=["AABB"] * n, phrasing=[ph] * n)
        bodies = decode(chain, tok, n, untied, seed=3)
        for body in bodies:
            assert not check_tune(body, meter) and check_ending(body) is None, body
            assert form_of(body, meter) == "AABB", body
        rates[name] = phrase_rates([phrase_counts(b, meter) for b in bodies])
    assert rates["none"]["restates_opening"] < 0.2, rates
    assert rates["strong"]["restates_opening"] > 0.8, rates
    # B's bar 8 closes the tune (a long tonic): it keeps A's bar 8 only where that one fits
    assert rates["strong"]["b_bars_from_a"] >= 1 > 0.2 > rates["none"]["b_bars_from_a"], rates
    assert rates["strong"]["part_ends_tonic"] > rates["none"]["part_ends_tonic"] + 0.3, rates


def test_length_rest_and_repeated_note_weights(tok):
    from poetry.tunes.rules import Phrase
    from poetry.tunes.style import phrase_counts, phrase_rates
    n = 12
    got, bodies_of = {}, {}
    for name, ph in {"fewer": Phrase(dotted=-20, rest=-20, same=20),
                     "more": Phrase(dotted=5, rest=5),
                     "sixteenths": Phrase(dotted=5, fine=-30)}.items():
        chain = tune_rules(tok, ["4/4"] * n, [()] * n, forms=["AABB"] * n, phrasing=[ph] * n)
        bodies = bodies_of[name] = decode(chain, tok, n, random_logits(tok), seed=4)
        assert all(not check_tune(b, "4/4") for b in bodies)
        got[name] = phrase_rates([phrase_counts(b, "4/4") for b in bodies])
    assert got["fewer"]["dotted_bars"] < 0.1 < got["more"]["dotted_bars"], got
    assert got["fewer"]["rest_bars"] < got["more"]["rest_bars"], got
    assert got["fewer"]["one_pitch_bars"] == 0, got
    assert got["sixteenths"]["dotted_bars"] > 0.1, got
    def finer(bodies):                     # lengths off the sixteenth grid: 1/4, 3/4 ...
        return sum(abc.token_kind(t) == "dur" and (2 * abc.token_duration(t)).denominator > 1
                   for b in bodies for t in abc.tokenize(b))
    # a bias, not a ban: a tuplet's later notes must repeat its first one's length
    assert finer(bodies_of["sixteenths"]) < 0.2 * finer(bodies_of["more"])


def test_a_note_twice_in_a_row_leans_away_from_a_third(tok):
    from poetry.tunes.rules import Phrase
    from poetry.tunes.style import phrase_counts, phrase_rates

    def repeating(t, out, gen):            # a decoder that likes to write its last token again
        x = torch.randn(len(out), tok.vocab_size, generator=gen) * 3
        for r, o in enumerate(out):
            if o:
                x[r, o[-1]] += 6
        return x
    got = {}
    for run in (0.0, 20.0):
        chain = tune_rules(tok, ["6/8"] * 12, [()] * 12, forms=["AABB"] * 12,
                           phrasing=[Phrase(run=run, land=1e-9)] * 12)
        bodies = decode(chain, tok, 12, repeating, seed=5)
        got[run] = phrase_rates([phrase_counts(b, "6/8") for b in bodies])["repeated_note_bars"]
    assert got[20.0] < 0.5 * got[0.0], got
