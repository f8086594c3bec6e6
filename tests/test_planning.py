"""Keyword planning: extraction for training, theme expansion at generation, the writer's plan."""
import random
import warnings

import pytest

from poetry.poems.format import KEYWORDS, source_text
from poetry.poems.planning import Planner, bigrams
from poetry.poems.train import training_source
from poetry.poems.writer import PoemWriter

POEMS = [{"title": "秋夜", "lines": ["秋风吹落叶", "蟋蟀在空堂"]},
         {"title": "秋思", "lines": ["秋风吹客衣", "砧声满夜堂"]},
         {"title": "春日", "lines": ["春风吹落花", "燕子入空堂"]},
         {"title": "夜雨", "lines": ["夜雨滴空堂", "蟋蟀鸣秋风"]}]


def test_candidate_words_follow_the_rhythm_and_skip_function_characters():
    assert bigrams("秋风吹落叶") == ["秋风", "吹落", "落叶"]        # 2+3: never 风吹
    assert bigrams("飘零尽日不归去") == ["飘零", "尽日", "归去"]    # 2+2+3: never 零尽
    assert bigrams("不知何处人") == ["处人"]                       # 不 and 何 are function


def test_extract_takes_each_lines_most_word_like_candidate():
    p = Planner({"秋风": 1.0, "落叶": 3.0, "吹落": 0.5, "风吹": 9.0}, 1, {})
    assert p.line_keyword("秋风吹落叶") == "落叶"                  # 风吹 is no candidate
    assert p.extract(["秋风吹落叶", "之乎者也矣"]) == ["落叶", None]
    real = Planner.from_poems(POEMS, min_df=1, near_df=1, min_titles=1, min_pair=1)
    assert real.df["蟋蟀"] > real.df["秋风"]     # 蟋 and 蟀 never occur apart
    strict = Planner.from_poems(POEMS, min_df=2, near_df=1, min_titles=1, min_pair=1)
    assert "落叶" not in strict.df and "秋风" in strict.df


def test_expansion_follows_the_title_and_is_seeded():
    p = Planner.from_poems(POEMS, min_df=1, near_df=1, min_titles=1, min_pair=1)
    near = [w for w, _ in p.candidates("夜")]
    assert "蟋蟀" in near and "燕子" not in near           # 蟋蟀 in both 夜 titles; 燕子 under 春
    a = p.expand("秋夜", random.Random(3), k=2)
    assert a == p.expand("秋夜", random.Random(3), k=2) and len(a) == 2
    assert not set(a[0]) & set(a[1])                        # no character shared
    assert p.expand("冬", random.Random(0)) == []            # nothing known: no plan


def test_planner_round_trips(tmp_path):
    p = Planner.from_poems(POEMS, min_df=1, near_df=1, min_titles=1, min_pair=1)
    (tmp_path / "k.json").write_text(p.to_json(), encoding="utf-8")
    q = Planner.load(tmp_path / "k.json")
    assert (q.df, q.poems, q.near) == (p.df, p.poems, p.near)
    with pytest.raises(FileNotFoundError, match="prepare"):
        Planner.load(tmp_path / "missing.json")


def test_training_sources_mix_plans_titles_and_keywords():
    poems = [{"id": str(i), "title": "秋夜", "form": "wujue", "lines": POEMS[0]["lines"] * 2,
              "body": "秋风吹落叶，蟋蟀在空堂。" * 2, "keywords": ["落叶", "蟋蟀", None, "空堂"]}
             for i in range(200)]
    srcs = [training_source(p) for p in poems]
    planned = [s for s in srcs if KEYWORDS in s]
    titled = [s for s in srcs if s == "<wujue>秋夜"]
    assert 0.35 < len(planned) / 200 < 0.65 and 0.1 < len(titled) / 200 < 0.4
    for s in planned:
        words = s.split(KEYWORDS)[1].split("，")
        assert s.startswith("<wujue>秋夜") and 1 <= len(words) <= 3
        order = [["落叶", "蟋蟀", "空堂"].index(w) for w in words]
        assert order == sorted(order)                        # in line order
    assert srcs == [training_source(p) for p in poems]       # stable


@pytest.fixture(scope="module")
def writer(poem_model_dir):
    return PoemWriter.load(poem_model_dir)


def test_each_candidate_samples_its_own_plan(writer):
    assert writer.planner is not None
    req = writer.request("明月", "wujue")
    plans = {writer.candidate(req, s).keywords for s in range(20)}
    assert len(plans) > 1 and all(plans)
    assert writer.candidate(req, 5) == writer.candidate(req, 5)
    enc = writer.source(writer.candidate(req, 5))
    assert writer.tok.stoi[KEYWORDS] in enc
    plain = writer.request("明月", "wujue", plan=False)
    assert writer.candidate(plain, 5) is plain
    assert writer.source(plain) == writer.tok.encode(source_text("wujue", "明月"))


def test_user_keywords_are_the_plan(writer):
    poems = writer.write("明月", form="wujue", n=2, seed=1, keywords="明月 江水")
    assert all(p["keywords"] == ["明月", "江水"] for p in poems)
    again = writer.write("明月", form="wujue", n=2, seed=1, keywords=["明月", "江水"])
    assert [p["poem"] for p in again] == [p["poem"] for p in poems]
    sampled = writer.write("明月", form="wujue", n=1, seed=1)
    assert sampled[0]["keywords"]


@pytest.mark.parametrize("keywords, message", [
    ("abc xyz", "no keyword"), ([1, 2], "list of strings"), (3, "string or a list")])
def test_bad_keywords_raise(writer, keywords, message):
    with pytest.raises(ValueError, match=message):
        writer.write("明月", keywords=keywords)


def test_repairable_keywords_warn(writer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        poems = writer.write("明月", form="wujue", seed=1, keywords="明月x abc 江")
    messages = " ".join(str(w.message) for w in caught)
    assert "dropped" in messages and "cut to" in messages
    assert poems[0]["keywords"] == ["明月", "江"]
    assert writer.write("明月", form="wujue", seed=1, keywords="  ")[0]["keywords"]  # = no plan
    with pytest.warns(UserWarning, match="first 4"):
        many = writer.write("明月", form="wujue", seed=1, keywords="明月 明月 春 秋 冬 江")
    assert many[0]["keywords"] == ["明月", "春", "秋", "冬"]


def test_models_without_plans_ignore_keywords(tmp_path):
    from poetry.poems.format import FORM_TOKENS
    from poetry.poems.train import default_model_config
    from shared.tokenizers import CharTokenizer
    from tests.helpers import export_tiny
    tok = CharTokenizer.train(["明月照江水，春风送别离。"], specials=FORM_TOKENS)
    d = export_tiny(tmp_path / "old", tok, default_model_config, {"rebuild": "test"})
    (d / "keywords.json").write_text(Planner.from_poems(POEMS, 1, 1, 1, 1).to_json(), "utf-8")
    old = PoemWriter.load(d)
    assert old.planner is None
    with pytest.warns(UserWarning, match="without keyword plans"):
        poems = old.write("明月", form="wujue", seed=1, keywords="明月")
    assert poems[0]["keywords"] == []
