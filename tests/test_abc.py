"""ABC normalisation, music tokens, keys/meters, transposition and the tune corpus pipeline."""
from fractions import Fraction
from pathlib import Path

import pytest

from poetry.tunes import abc
from poetry.tunes import data as tune_data
from poetry.tunes.abc import AbcError, Key, parse_key, parse_meter
from poetry.tunes.rules import check_tune

FIXTURES = Path(__file__).parent / "fixtures" / "tunes"
GOOD = ["reel.abc", "jig.abc", "essen.abc", "slip.abc"]


def normalised(name: str) -> dict:
    source = "essenFolksong" if name.startswith("essen") else "fixture"
    return tune_data.normalise_tune((FIXTURES / name).read_text(), source)


@pytest.mark.parametrize("text,key", [
    ("D", Key("D", "maj")), ("Dmaj", Key("D", "maj")), ("Ador", Key("A", "dor")),
    ("Emin", Key("E", "min")), ("Gmix", Key("G", "mix")), ("F#m", Key("F#", "min")),
    ("Bb", Key("Bb", "maj")), ("E Minor", Key("E", "min")), ("A Mixolydian", Key("A", "mix")),
    ("Cdorian", Key("C", "dor"))])
def test_parse_key(text, key):
    assert parse_key(text) == key
    assert parse_key(str(key)) == key


@pytest.mark.parametrize("bad", ["", "H", "Hp", "none", "Dxyz", "Dmajorx", "D#maj", "G mi x",
                                 "Clyd", "Ephr"])
def test_bad_key_is_one_line_value_error(bad):
    with pytest.raises(ValueError) as err:
        parse_key(bad)
    assert "\n" not in str(err.value)


def test_the_tonic_may_be_lower_case_as_the_mode_may_be_spelled_out():
    # `D minor` was taken while `dmaj` was refused: either case of tonic is one key
    assert parse_key("dmaj") == parse_key("Dmaj") and parse_key("d") == parse_key("D")
    assert parse_key("bbmix") == parse_key("Bbmix") and parse_key("f#m") == parse_key("F#min")


def test_key_signatures():
    assert parse_key("Ador").fifths() == 1 and parse_key("Cmin").fifths() == -3
    assert parse_key("Gmix").fifths() == 0 and parse_key("Bb").fifths() == -2
    sig = parse_key("D").signature()
    assert sig[abc.LETTERS.index("F")] == 1 and sig[abc.LETTERS.index("C")] == 1
    assert sum(sig.values()) == 2


def test_meters():
    assert parse_meter("C") == "4/4" and parse_meter("C|") == "2/2"
    assert parse_meter(" 6/8 ") == "6/8"
    assert abc.bar_length("6/8") == 6 and abc.bar_length("C|") == 8
    assert abc.bar_length("9/8") == 9 and abc.bar_length("3/4") == 6
    for bad in ("5/8", "none", "7", "", "C||"):
        with pytest.raises(ValueError):
            parse_meter(bad)


@pytest.mark.parametrize("name", GOOD)
def test_fixture_tunes_normalise_to_valid_tokens(name):
    rec = normalised(name)
    body = rec["body"]
    toks = abc.tokenize(body)
    assert "".join(toks) == body                       # lossless
    assert all(abc.token_kind(t) for t in toks)        # nothing unknown
    assert not check_tune(body, rec["meter"])
    assert " " not in body and "\n" not in body


def test_normalisation_details():
    reel = normalised("reel.abc")
    assert reel["meter"] == "2/2" and reel["key"] == "Gmaj" and reel["rhythm"] == "reel"
    body = reel["body"]
    assert body.startswith("G2|:")                     # pickup D2 in G -> G2 in C
    assert "f3/2d/2" in body                           # c>A written out
    assert "(3def" in body and "[1" in body and "[2" in body and "d4-d2" in body
    assert '"' not in body and "{" not in body and "~" not in body
    jig = normalised("jig.abc")
    assert jig["mode"] == "dor" and jig["rhythm"] == "jig" and "=B" in jig["body"]
    essen = normalised("essen.abc")                     # ends on E with a G signature: E minor
    assert essen["key"] == "Emin" and essen["rhythm"] == "song"
    assert essen["body"] == "G2|c2c2d2|e4d2|c2B2A2|G4G2|F2F2E2|D4C2|C4|]"


def test_odd_input():
    with pytest.raises(AbcError):
        normalised("odd.abc")
    tok = abc.make_tokenizer([normalised(n)["body"] for n in GOOD])
    ids = tok.encode("A2&B|x:|")
    assert tok.unk_id in ids
    tok.decode(ids)                                    # no crash
    assert abc.token_kind("&") is None


def test_tokenizer_round_trip_and_vocab():
    bodies = [normalised(n)["body"] for n in GOOD]
    tok = abc.make_tokenizer(bodies)
    for body in bodies:
        assert tok.decode(tok.encode(body)) == body
    assert {"|", "|:", ":|", "[1", "(3", "/2", "3/2"} <= set(tok.itos)


def test_bar_durations():
    toks = abc.tokenize("G|c3cde|(3cdec2|z6|]")
    assert [d for _, d, _ in abc.bars(toks)] == [1, 6, 4, 6]
    toks = abc.tokenize("|:c/2d/2e3/2f/2g2:|")
    assert abc.bars(toks)[0][1:] == (Fraction(5), ":|")


def test_transpose_spelling_and_round_trip():
    C = parse_key("Cmaj")
    assert abc.transpose("CDEF^FG|", C, parse_key("Dmaj")) == "DEFG^GA|"
    assert abc.transpose("CDEF|", parse_key("Cmin"), parse_key("Amin")) == "A,B,CD|"
    assert abc.transpose("c2B|", parse_key("Cmaj"), parse_key("Bbmaj")) == "B2A|"
    for rec in (normalised(n) for n in GOOD):
        src = Key("C", rec["mode"])
        for tonic in ("D", "Eb", "F#", "A", "Bb"):
            dst = Key(tonic, rec["mode"])
            if abs(dst.fifths()) > 7:
                continue
            there = abc.transpose(rec["body"], src, dst)
            assert abc.transpose(there, dst, src) == rec["body"]


def test_fragment_normalisation():
    # a user's opening bar in D major -> tonic C tokens
    assert abc.normalise("|:A2B c2d|", parse_key("D"), target=parse_key("C")) == "|:G2AB2c|"
    with pytest.raises(AbcError):
        abc.normalise("A2 # B", parse_key("D"))


def test_build_and_read_tune():
    body = normalised("reel.abc")["body"]
    text = abc.build_tune("2/2", "Gmaj", "reel", body, 7)
    lines = text.splitlines()
    assert lines[:6] == ["X:7", "T:Untitled 7", "M:2/2", "L:1/8", "R:reel", "K:Gmaj"]
    fields, got = abc.read_tune(text)
    assert fields["K"] == "Gmaj" and fields["M"] == "2/2"
    assert got.replace("\n", "") == body


def test_rhythm_mapping_and_split():
    assert tune_data.rhythm_of("double jig", "", "x", 1, "6/8") == "jig"
    assert tune_data.rhythm_of("slipjig", "", "x", 1, "9/8") == "slip jig"
    assert tune_data.rhythm_of("", "The Royal Glasgow Jig.", "x", 1, "6/8") == "jig"
    assert tune_data.rhythm_of("", "Quick Step. 25th Regt.", "x", 1, "2/4") == "march"
    assert tune_data.rhythm_of("Liebes - Lied", "", "essenFolksong", 1, "3/4") == "song"
    assert tune_data.rhythm_of("", "x", "oneills1850", 1400, "2/2") == "reel"
    assert tune_data.rhythm_of("", "Fair Maid", "x", 1, "3/4") == "other"
    splits = [tune_data.split_of(str(i), (94, 3, 3)) for i in range(2000)]
    assert 0.9 < splits.count("train") / 2000 < 0.97 and set(splits) == set(tune_data.SPLITS)


def test_split_tunes():
    text = "%header\n\nX:1\nK:C\nCDE|]\n\nX:2\nK:G\nGAB|]\n"
    assert [t.split("\n")[0] for t in tune_data.split_tunes(text)] == ["X:1", "X:2"]


SAMPLE = FIXTURES / "prepared-sample.jsonl"


def round_trips(row: dict) -> None:
    toks = abc.tokenize(row["body"])
    assert "".join(toks) == row["body"] and all(abc.token_kind(t) for t in toks), row["id"]
    assert not check_tune(row["body"], row["meter"]), row["id"]


def test_prepared_corpus_round_trip():
    """Prepared tunes: the tokens join back to the body and it obeys the rules. Always on the
    shipped sample (tests/fixtures/tunes/prepared-sample.jsonl: a tune of each source, meter
    and mode of a prepared corpus, and of each rhythm, with the ABC it came from, which must
    still normalise to the same record); on every tune of cache/tunes where one was prepared."""
    import json
    sample = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(sample) >= 100 and any(r["expanded"] for r in sample)
    assert len({r["rhythm"] for r in sample}) >= 8 and len({r["meter"] for r in sample}) >= 8
    for row in sample:
        rec = tune_data.normalise_tune(row["abc"], row["source"])
        assert {k: rec[k] for k in ("meter", "mode", "key", "body", "expanded")} == \
            {k: row[k] for k in ("meter", "mode", "key", "body", "expanded")}, row["id"]
        round_trips(row)
    out = tune_data.DEFAULT_OUT
    if (out / "train.jsonl").exists():
        for split in tune_data.SPLITS:
            for row in tune_data.load_split(split, out):
                round_trips(row)
