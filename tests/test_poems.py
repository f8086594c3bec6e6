"""PoemWriter, CLI and batch behaviour on a tiny model built here (rules guarantee the form
whatever the model's quality; quality is measured by `python -m poetry.evaluate poem`)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from poetry.cli import main as cli_main
from poetry.poems.repetition import Limits
from poetry.poems.rules import LineIndex
from poetry.poems import MAX_N, PoemWriter
from poetry.poems.verse import check_poem, split_poem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def writer(poem_model_dir):
    return PoemWriter.load(poem_model_dir)


@pytest.mark.parametrize("form", ["wujue", "qijue", "wulv", "qilv"])
def test_every_form_is_valid_and_rhymed(writer, form):
    poems = writer.write("明月", form=form, n=3, seed=1)
    assert len(poems) == 3
    for p in poems:
        assert check_poem(p["lines"], form, rhyme=True) == []
        assert p["poem"].endswith("。") and p["score"] < 0 and p["theme"] == "明月"


def test_acrostic_start_and_novelty(writer):
    (p,) = writer.write("春", form="wujue", acrostic="春夏秋冬", seed=2)
    assert [x[0] for x in p["lines"]] == list("春夏秋冬")
    (p,) = writer.write("山", form="wujue", start="白日依山尽", seed=3)
    assert p["lines"][0] == "白日依山尽"                 # user lines are exempt from novelty
    assert all(x not in writer.lines for x in p["lines"][1:])
    assert isinstance(writer.lines, LineIndex) and isinstance(writer.limits, Limits)


def test_same_seed_same_poems_and_streaming(writer):
    a = writer.write("秋思", form="qijue", n=2, seed=7)
    assert a == writer.write("秋思", form="qijue", n=2, seed=7)
    partial = list(writer.stream("秋思", form="wujue", seed=7))
    assert [len(p) for p in partial] == list(range(1, 4 * 6 + 1))   # 20 characters + 4 marks
    assert check_poem(split_poem(partial[-1]), "wujue", rhyme=True) == []
    # what streams in is what you get (the leading candidate may change on the way)
    assert partial[-1] == writer.write("秋思", form="wujue", seed=7)[0]["poem"]
    # and the stream returns write()'s own result: streaming need not decode twice
    parts = writer.stream("秋思", form="wujue", seed=7)
    while True:
        try:
            next(parts)
        except StopIteration as done:
            assert done.value == writer.write("秋思", form="wujue", seed=7)
            break


@pytest.mark.parametrize("kw, message", [
    (dict(theme=""), "empty"),
    (dict(theme="hello"), "no Chinese"),
    (dict(theme="龘"), "no character"),
    (dict(theme="春", form="sonnet"), "form"),
    (dict(theme="春", form="wujue", acrostic="春夏"), "acrostic"),
    (dict(theme="春", form="wujue", acrostic="春夏秋冬", start="白日依山尽"), "acrostic head"),
    (dict(theme="春", form="qijue", start="白日依山尽"), "characters"),
    (dict(theme="春", n=0), "positive"),
])
def test_bad_requests_raise_value_error(writer, kw, message):
    with pytest.raises(ValueError, match=message):
        writer.write(**kw)


def test_repairable_requests_warn(writer):
    with pytest.warns(UserWarning, match="龘"):
        writer.write("明月龘", form="wujue", seed=1)
    with pytest.warns(UserWarning, match="cap"):
        assert len(writer.write("明月", form="wujue", n=MAX_N + 5, seed=1, candidates=1)) == MAX_N


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "poetry", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_text_jsonl_and_errors(poem_model_dir):
    r = run_cli("poem", "--theme", "明月", "--form", "wujue", "--seed", "1", "--format", "jsonl",
                "--model", str(poem_model_dir))
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    assert set(rec) == {"theme", "form", "keywords", "poem", "lines", "score"}
    bad = run_cli("poem", "--theme", "春", "--form", "wujue", "--acrostic", "春夏",
                  "--model", str(poem_model_dir))
    assert bad.returncode == 2 and bad.stderr.startswith("error:")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    missing = run_cli("poem", "--theme", "春", "--model", str(poem_model_dir / "nope"))
    assert missing.returncode == 2 and "card.json" in missing.stderr


def test_batch_resumes_in_order_and_isolates_bad_items(poem_model_dir, tmp_path):
    inp = tmp_path / "themes.txt"
    inp.write_text("明月\n秋思\n"
                   '{"theme": "春", "form": "wujue", "acrostic": "春夏秋冬"}\n'
                   '{"theme": "hello"}\n{"theme": "江", "n": 2, "seed": 5}\n{bad json\n'
                   "送别\n", encoding="utf-8")
    args = ["poem", "--input", str(inp), "--form", "wujue", "--seed", "3",
            "--model", str(poem_model_dir)]
    full = tmp_path / "full.jsonl"
    assert cli_main(args + ["--output", str(full)]) == 0
    lines = [json.loads(x) for x in full.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in lines] == list(range(7))
    assert "error" in lines[3] and "error" in lines[5] and len(lines[4]["poems"]) == 2
    assert [x[0] for x in lines[2]["poems"][0]["lines"]] == list("春夏秋冬")
    # a run killed after two items and mid-way through the third line, then resumed
    part = tmp_path / "part.jsonl"
    text = full.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(text[:2]) + text[2][:15], encoding="utf-8")
    assert cli_main(args + ["--output", str(part)]) == 0
    assert part.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")
    # item 0 of a batch with --seed 3 equals a single call with --seed 3
    single = PoemWriter.load(poem_model_dir).write("明月", form="wujue", seed=3)
    assert lines[0]["poems"] == single


def test_ranking_hook(writer, monkeypatch):
    """Candidates are ranked by `rank_score` (shared/writer.py); results keep the model score."""
    from poetry.poems.themes import Associations
    assert isinstance(writer.themes, Associations)
    plain = sorted((p["score"] for p in writer.write("明月", form="wujue", n=3, seed=4,
                                                      candidates=1)), reverse=True)
    monkeypatch.setattr(PoemWriter, "rank_score", lambda self, req, text, score: -score)
    worst = writer.write("明月", form="wujue", n=3, seed=4, candidates=1)
    assert [p["score"] for p in worst] == plain[::-1]
    # streaming follows the same ranking: its last yield is what write returns first
    assert list(writer.stream("明月", form="wujue", seed=4))[-1] == \
        writer.write("明月", form="wujue", seed=4)[0]["poem"]


def test_theme_relevance_moves_the_ranking(writer):
    req = writer.request("月", form="wujue")
    plain = writer.rank_score(req, "山山山山山，", -3.0)
    near = writer.rank_score(req, "明光夜月山，", -3.0)
    from poetry.poems.writer import THEME_WEIGHT
    assert plain == -3.0 and near == pytest.approx(-3.0 + THEME_WEIGHT * 4 / 5)


OBLIQUE = "月雪木柳水石竹叶落色夜路"           # 仄 in 平水韵, in no level rhyme group


def narrow_writer(folder: Path, limits: "Limits | None") -> PoemWriter:
    """A tiny poem model whose only level (平) character is 天, the only rhyme of 先, beside
    twelve oblique ones: rules that cannot all hold, so the order they give way in shows."""
    from poetry.poems.format import SPECIALS
    from poetry.poems.train import default_model_config
    from shared.tokenizers import CharTokenizer
    from tests.helpers import export_tiny
    tok = CharTokenizer(list("天" + OBLIQUE + "，。"), specials=SPECIALS)
    extra = {}
    if limits is not None:
        (folder / "extra").mkdir(parents=True)
        extra["repetition.json"] = folder / "extra" / "repetition.json"
        extra["repetition.json"].write_text(limits.to_json(), encoding="utf-8")
    return PoemWriter.load(export_tiny(folder / "model", tok, default_model_config,
                                       {"rebuild": "tests/test_poems.py"}, extra_files=extra))


def test_strict_tones_give_way_first(tmp_path):
    """平 wanted where 天, the one level character, is at the cap of 2 a poem: the tones give
    way (an oblique character is written) before the repetition limits would (天 a third
    time), and the poem's "relaxed" record says so."""
    w = narrow_writer(tmp_path, Limits({"wujue": 2}, {"wujue": 0}, frozenset(), {5: frozenset()}))
    for p in w.write("月", form="wujue", n=3, tones="strict", rhyme=False, seed=1):
        rules = [rule for rule, _ in p["relaxed"]]
        assert rules and set(rules) == {"tones"}, p["relaxed"]
        assert p["poem"].count("天") <= 2, p["poem"]


def test_a_repeated_rhyme_gives_way_before_the_rhyme(tmp_path):
    """Lines 2 and 4 must rhyme in 先, where 天 alone is known: line 4 repeats the rhyme
    character (重韵 gives way) rather than leaving the rhyme, and the record names 重韵 and never
    the rhyme."""
    w = narrow_writer(tmp_path, None)
    for p in w.write("月", form="wujue", n=3, seed=2):
        lines = split_poem(p["poem"])
        assert lines[1][-1] == lines[3][-1] == "天", p["poem"]
        assert ["repeated rhyme", 4] in p["relaxed"], p["relaxed"]
        assert "rhyme" not in [rule for rule, _ in p["relaxed"]], p["relaxed"]
