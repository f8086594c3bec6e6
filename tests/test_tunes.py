"""TuneWriter, tune CLI and batch behaviour on a tiny random model built here (the rules make
every tune valid whatever the model's quality; quality is measured by poetry.tunes.evaluate)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from poetry.tunes import abc
from poetry.tunes.abc import METERS, Key, parse_key
from poetry.cli import main as poetry_main
from poetry.tunes.data import _music21_error
from poetry.tunes.rules import FORMS, check_ending, check_tune, copied_windows
from poetry.tunes import MAX_N, TuneWriter

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tune_model_dir):
    """The tiny tune model of conftest.py (its tokens and rhythms are the ones above)."""
    return tune_model_dir


@pytest.fixture()
def short(monkeypatch):
    """Random models write up to the length cap: keep the tests' tunes short."""
    import poetry.tunes.writer
    monkeypatch.setattr(poetry.tunes.writer, "MAX_BARS", 8)
    monkeypatch.setattr(poetry.tunes.writer, "MIN_BARS", 4)


@pytest.fixture()
def writer(model_dir, short):
    return TuneWriter.load(model_dir)


def cli_main(argv):
    return poetry_main(["tune", *argv])


def in_c(tune: dict) -> str:
    key = parse_key(tune["key"])
    return abc.transpose(tune["body"], key, Key("C", key.mode))


def test_every_meter_gives_valid_parsable_tunes_with_matching_headers(writer):
    keys = ["D", "Ador", "Emin", "Gmix", "Bb", "F#min", "C", "Edor", "Amaj", "Dmix"]
    jobs = [(writer.request(m, k), 1, i) for i, (m, k) in enumerate(zip(METERS, keys))]
    for (req, _, _), (t,) in zip(jobs, writer.generate(jobs)):
        assert check_tune(t["body"], t["meter"]) == [], t["abc"]
        assert check_tune(in_c(t), t["meter"]) == []
        assert _music21_error(t["abc"]) == "", t["abc"]
        fields, body = abc.read_tune(t["abc"])
        assert fields["M"] == req.meter == t["meter"] and fields["L"] == "1/8"
        assert parse_key(fields["K"]) == req.key and fields["R"] == t["rhythm"]
        assert fields["X"] == "1" and fields["T"] == "Untitled 1"
        assert body.replace("\n", "") == t["body"] and t["score"] < 0


@pytest.mark.filterwarnings("ignore:only .* training tunes")  # rare rhythm-meter pairs
def test_every_rhythm_and_form_ends_on_a_long_tonic(writer):
    """docs/tunes.md: the last note is the tonic, a quarter or longer, and the last bar has no
    note shorter than an eighth, for every rhythm the model knows in each form."""
    from tests.helpers import RHYTHMS
    jobs = [(writer.request(meter, "Dmaj", rhythm, form=form), 1, i) for i, (meter, rhythm, form)
            in enumerate((m, r, f) for m in RHYTHMS for r in RHYTHMS[m] for f in FORMS)]
    for (req, _, _), (t,) in zip(jobs, writer.generate(jobs, candidates=1)):
        assert t["form"] == req.form and check_tune(t["home"], t["meter"]) == [], t["abc"]
        assert check_ending(t["home"]) is None, (check_ending(t["home"]), t["rhythm"], t["abc"])


def test_rhythm_default_and_mapping(writer):
    assert writer.default_rhythm("6/8") == "jig" and writer.default_rhythm("4/4") == "reel"
    assert writer.default_rhythm("9/8") == "other"          # a meter the card has no rhythms for
    (t,) = writer.write("6/8", "D", seed=1)
    assert t["rhythm"] == "jig" and "R:jig" in t["abc"]
    with pytest.warns(UserWarning, match="no slip jig tunes"):   # not in the card: folded
        assert writer.request("6/8", "D", "Slip-Jig").rhythm == "other"


@pytest.mark.parametrize("key, start", [("Dmaj", "|:A2B c2d|"), ("Ador", "e2a a2b|"),
                                         ("F#min", "F2A c3|"), ("Gb", "B,2D G3|")])
def test_start_is_forced_in_the_users_key(writer, key, start):
    want = abc.normalise(start, parse_key(key))
    (t,) = writer.write("6/8", key, start=start, seed=4)
    if t["form"] == "AABB" and not want.startswith("|:"):
        want = "|:" + want                 # the repeated first part opens with its sign
    assert t["body"].startswith(want), (want, t["body"])
    if key == "Gb":            # rules off: the opening is still forced, and transposed back
        (t,) = writer.write("6/8", key, start=start, seed=4, rules=False)
        assert t["body"].startswith(want), (want, t["body"])


def test_same_seed_same_tunes(writer):
    a = writer.write("2/4", "G", n=2, seed=7)
    assert a == writer.write("2/4", "G", n=2, seed=7)
    assert len(a) == 2 and a[0]["body"] != a[1]["body"]
    assert a != writer.write("2/4", "G", n=2, seed=8)
    assert [t["abc"].splitlines()[0] for t in a] == ["X:1", "X:2"]


@pytest.mark.parametrize("kw, message", [
    (dict(meter="5/4", key="D"), "unknown meter '5/4'"),
    (dict(meter="6/8", key="H"), "unknown key 'H'"),
    (dict(meter="6/8", key="Dlyd"), "unknown key"),
    (dict(meter="6/8", key="D", rhythm="tango"), "unknown rhythm 'tango'"),
    (dict(meter="6/8", key="D", start="hello world"), "not valid ABC"),
    (dict(meter="6/8", key="D", start="[CEG]2 A#"), "not ABC this model reads"),
    (dict(meter="6/8", key="D", start="A2B c2d e2f g2a|"), "do not fit the meter 6/8"),
    (dict(meter="6/8", key="D", start="A9B c2d|"), "symbols the model does not know: 9"),
    (dict(meter="6/8", key="D", start="%%"), "no notes"),
    (dict(meter="6/8", key="D", n=0), "positive"),
    (dict(meter="6/8", key="D", temperature=0), "temperature"),
])
def test_bad_requests_raise_one_line_value_errors(writer, kw, message):
    with pytest.raises(ValueError, match=message) as e:
        writer.write(**kw)
    assert "\n" not in str(e.value)


def test_n_above_the_cap_warns(writer):
    with pytest.warns(UserWarning, match="cap"):
        assert len(writer.write("3/8", "D", n=MAX_N + 3, seed=1)) == MAX_N


def test_rules_off_still_gives_a_header(writer):
    (t,) = writer.write("4/4", "Emin", seed=2, rules=False)
    assert abc.read_tune(t["abc"])[0]["K"] == "Emin" and t["score"] < 0


def run_module(*args):
    return subprocess.run([sys.executable, "-m", "poetry", "tune", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_jsonl_abc_and_errors(model_dir):
    r = run_module("--meter", "2/4", "--key", "D", "--start", "d2 e/f/g", "-n", "2", "--seed",
                   "1", "--format", "jsonl", "--model", str(model_dir))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(recs) == 2 and all(set(x) == {"abc", "meter", "key", "rhythm", "form", "score"}
                                  for x in recs)
    assert recs[0]["rhythm"] == "song" and recs[0]["key"] == "Dmaj"
    for args in (["--meter", "5/4", "--key", "D"], ["--meter", "6/8", "--key", "Q"],
                 ["--meter", "6/8", "--key", "D", "--start", "A2B c2d e2f g2a|"],
                 ["--meter", "6/8", "--key", "D", "-n", "0"], ["--key", "D"],
                 ["--meter", "6/8", "--key", "D", "--model", str(model_dir / "nope")]):
        bad = run_module(*args, "--model", str(model_dir)) if "--model" not in args else \
            run_module(*args)
        assert bad.returncode == 2 and bad.stderr.startswith("error:"), (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_cli_abc_and_out_dir(model_dir, short, tmp_path, capsys):
    out = tmp_path / "render"
    assert cli_main(["--meter", "6/8", "--key", "Ador", "--rhythm", "jig", "-n", "2",
                     "--seed", "3", "--out-dir", str(out), "--model", str(model_dir)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("X:1\nT:Untitled 1\nM:6/8\nL:1/8\nR:jig\nK:Ador\n")
    assert "\nX:2\n" in text
    for k in (1, 2):
        for ext in ("abc", "mid", "wav", "svg"):
            assert (out / f"tune{k}.{ext}").stat().st_size > 0
    assert (out / "tune1.mid").read_bytes()[:4] == b"MThd"
    assert (out / "tune1.abc").read_text() in text


def test_batch_resumes_in_order_and_isolates_bad_items(model_dir, short, tmp_path):
    inp = tmp_path / "settings.jsonl"
    inp.write_text('{"meter": "6/8", "key": "D", "rhythm": "jig"}\n'
                   "2/4 G song\n"
                   '{"meter": "5/4", "key": "D"}\n'
                   '{"key": "Emin", "start": "|:B2e e2f|", "n": 2, "seed": 5}\n'
                   "{bad json\n"
                   '{"meter": "3/4", "key": "D", "colour": "red"}\n'
                   "4/4 Ador\n", encoding="utf-8")
    args = ["--input", str(inp), "--meter", "6/8", "--seed", "3", "--model", str(model_dir)]
    full = tmp_path / "full.jsonl"
    assert cli_main(args + ["--output", str(full)]) == 0
    lines = [json.loads(x) for x in full.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in lines] == list(range(7))
    assert [("error" in r) for r in lines] == [False, False, True, False, True, True, False]
    assert "unknown meter" in lines[2]["error"] and "colour" in lines[5]["error"]
    assert len(lines[3]["tunes"]) == 2 and lines[1]["tunes"][0]["rhythm"] == "song"
    assert lines[3]["tunes"][0]["abc"].split("K:Emin\n")[1].startswith("|:B2ee2f|")
    # a run killed after two items and mid-way through the third line, then resumed
    part = tmp_path / "part.jsonl"
    text = full.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(text[:2]) + text[2][:15], encoding="utf-8")
    assert cli_main(args + ["--output", str(part)]) == 0
    assert part.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")
    # item 0 of a batch with --seed 3 equals a single call with --seed 3
    (single,) = TuneWriter.load(model_dir).write("6/8", "D", rhythm="jig", seed=3)
    assert lines[0]["tunes"][0] == {k: single[k] for k in lines[0]["tunes"][0]}


def test_evaluation_metrics_on_a_few_tunes(writer):
    from poetry.tunes import evaluate as tune_eval, style
    assert tune_eval.interior_bars("c|c6|c5|c6|c|]", "6/8") == (2, 3)
    reqs = tune_eval.requests(writer, 4)
    assert [r["meter"] for r in reqs] == list(METERS[:4])
    m = tune_eval.generation_metrics(writer, reqs, rules=True, chunk=2)
    assert m["tunes"] == 4 and m["interior_bars_exact"] == 1.0 and m["all_rules_pass"] == 1.0
    assert m["header_matches"] == 1.0 and m["music21_parses"] == 1.0
    assert m["copies_4_bars"] == 0.0
    assert m["ends_tonic"] == 1.0 and set(m["by_rhythm"]) == {r["rhythm"] for r in reqs}
    assert m["out_of_mode_rate"] <= max(style.style_of(r["rhythm"]).out_of_mode for r in reqs)
    assert m["notes_outside_rhythm_range"] == 0.0
    jig = [(writer.request("6/8", "D", "jig"), 1, 3)]
    m = tune_eval.folk_metrics(writer.generate(jig)[0])
    assert m["dance_tunes"] == m["formed_tunes"] == 1 and m["in_requested_form"] == 1.0
    assert m["dance_in_requested_form_with_repeats"] == 1.0


@pytest.mark.skipif(not (ROOT / "data" / "models" / "tune" / "card.json").exists(),
                    reason="no shipped tune model")
def test_shipped_model_writes_valid_tunes():
    w = TuneWriter.load()
    assert w.default_rhythm("9/8") == "slip jig" and "jig" in w.rhythms
    tunes = w.write("6/8", "Dmaj", rhythm="jig", start="|:A2B c2d|", n=2, seed=1)
    for t in tunes:
        assert t["body"].startswith("|:A2Bc2d|") and check_tune(t["body"], "6/8") == []
        assert copied_windows(in_c(t), w.windows) == 0


@pytest.mark.parametrize("form", ["AABB", "AB"])
def test_form_option_gives_that_form_ending_on_the_tonic(writer, form):
    from poetry.tunes.style import figures
    for key in ("Dmaj", "Ador"):
        (t,) = writer.write("6/8", key, rhythm="jig", form=form.lower(), seed=2)
        fig = figures(t["body"], "6/8", parse_key(key))
        assert t["form"] == form and fig["form"] == form and fig["ends_tonic"], t["abc"]
        assert check_tune(t["body"], "6/8") == [] and _music21_error(t["abc"]) == ""


def test_form_defaults_per_rhythm_and_opening_gets_its_repeat(writer):
    from poetry.tunes.style import style_of
    assert writer.request("6/8", "D", "jig").form == style_of("jig").form == "AABB"
    assert writer.request("2/4", "D", "song").form == style_of("song").form
    with pytest.raises(ValueError, match="unknown form 'ABAB'"):
        writer.request("6/8", "D", "jig", form="ABAB")
    (t,) = writer.write("6/8", "D", rhythm="jig", start="A2B c2d|", seed=1)
    assert t["body"].startswith("|:A2Bc2d|")     # AABB opens a repeat; the notes are the user's
    (t,) = writer.write("6/8", "D", rhythm="jig", start="A2B c2d|", seed=1, form="free")
    assert t["body"].startswith("A2Bc2d|")
    with pytest.raises(ValueError, match="form AB"):
        writer.write("6/8", "D", rhythm="jig", start="|:A2B c2d|", form="AB")


def test_cli_and_batch_take_a_form(model_dir, short, tmp_path, capsys):
    assert cli_main(["--meter", "6/8", "--key", "G", "--form", "AB", "--format", "jsonl",
                     "--seed", "1", "--model", str(model_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["form"] == "AB"
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"meter": "6/8", "key": "D", "form": "AABB"}\n'
                   '{"meter": "6/8", "key": "D", "form": "AB"}\n'
                   '{"meter": "6/8", "key": "D", "form": "rondo"}\n', encoding="utf-8")
    assert cli_main(["--input", str(inp), "--output", str(out), "--model", str(model_dir)]) == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["tunes"][0]["form"] for r in lines[:2]] == ["AABB", "AB"]
    assert "unknown form 'rondo'" in lines[2]["error"]


def test_a_tune_is_the_same_alone_in_a_batch_and_again(model_dir):
    """The rules keep no state between batches but their mask cache: a job's tune does not
    depend on what was decoded before it or beside it (full-length tunes: more ties)."""
    job = (TuneWriter.load(model_dir).request("6/8", "D", "jig"), 1, 99)
    alone = TuneWriter.load(model_dir).generate([job])[0][0]["home"]
    writer = TuneWriter.load(model_dir)              # a fresh cache, filled by a batch
    others = [(writer.request(m, k, r), 1, 50 + i) for i, (m, k, r) in
              enumerate((("6/8", "D", "jig"), ("2/4", "G", "reel"), ("3/4", "A", "song")))]
    beside = writer.generate(others + [job])[3][0]["home"]
    assert alone == beside == writer.generate([job])[0][0]["home"]
