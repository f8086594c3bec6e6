"""Verse facts on hand-made examples."""
import pytest

from poetry.poems import verse as v

JINGYESI = ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]     # 古绝: rhymes, not 律
GUANQUE = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]      # 仄起不入韵 五绝
BAIDI = ["朝辞白帝彩云间", "千里江陵一日还", "两岸猿声啼不住", "轻舟已过万重山"]


def test_rhyme_groups():
    assert {c: v.rhyme_groups(c) for c in "光霜乡"} == {c: {"唐"} for c in "光霜乡"}
    assert v.rhyme_groups("诗") == {"支"} and v.rhyme_groups("知") == {"支"}
    assert v.rhyme_groups("低") == {"齐"} and v.rhyme_groups("鱼") == {"齐"}   # i, v
    assert v.rhyme_groups("二") == {"齐"}                                      # er
    assert v.rhyme_groups("月") == {"皆"}             # yue4; the rare ru4 is not a common reading
    assert {g for g, _ in v.all_readings("月")} == {"皆", "姑"}
    assert v.rhyme_groups("东") == {"庚"} and v.rhyme_groups("穷") == {"庚"}   # ong, iong
    assert v.rhyme_groups("云") == {"文"} and v.rhyme_groups("春") == {"文"}   # vn, uen
    assert v.rhyme_groups("还") >= {"寒"} and v.rhyme_groups("流") == {"尤"}
    assert v.rhyme_groups("a") == frozenset() and v.rhyme_groups("□") == frozenset()
    assert len(v.RHYME_GROUPS) == 14


def test_common_readings_of_xinyun():
    x = "xinyun"
    assert v.level_rhyme_groups("惊", x) == {"庚"}     # jing1; the rare liang2 never rhymes
    assert "唐" in {g for g, _ in v.all_readings("惊")}
    assert v.level_rhyme_groups("看", x) == {"寒"}     # kan1 from phrases (看守)
    assert v.level_rhyme_groups("斜", x) == {"皆", "麻"}   # xia2: Tang poems rhyme it with 家
    assert not v.rhymes(["明月照高楼", "清光不敢惊", "秋风吹客梦", "夜夜满林光"], x)


def test_modern_tones_and_neutral():
    x = "xinyun"
    assert v.tones("天") == {1} and v.is_level("天", x) and not v.is_oblique("天", x)
    assert v.is_level("平", x) and v.is_oblique("仄", x) and not v.is_level("仄", x)
    assert v.tones("月") == {4} and v.is_oblique("月", x)
    assert v.is_level("国", x)        # classically 入声 (仄); modern guo2 is level
    assert 4 in v.tones("看") and 1 in v.tones("看")                # heteronym: both
    assert v.tones("们") == {2}       # men5 ignored, men2 kept
    assert v.tones("咗") == frozenset()  # only a neutral reading: neither level nor oblique
    assert not v.is_level("咗", x) and not v.is_oblique("咗", x)
    assert v.fits("咗", "⊙", x) and not v.fits("咗", "平", x) and not v.fits("咗", "仄", x)
    assert v.level_rhyme_groups("月", x) == frozenset()   # oblique readings never rhyme here
    assert v.primary_is_level("光", x) and not v.primary_is_level("子", x)


def test_pingshui_is_the_default_rhyme_book():
    assert v.DEFAULT_BOOK == "pingshui" and len(v.group_names()) == 30
    # 新韵 puts eng, ing and ong in one group; 平水韵 keeps 东 (ong), 庚 (eng, ing) and 青 apart
    assert v.level_rhyme_groups("城", "xinyun") == v.level_rhyme_groups("中", "xinyun") == {"庚"}
    assert v.level_rhyme_groups("城") == {"庚"} and v.level_rhyme_groups("中") == {"东"}
    assert v.level_rhyme_groups("青") == {"青"} and v.level_rhyme_groups("东") == {"东"}
    assert not v.rhymes(["白日依山尽", "长安万里城", "欲穷千里目", "更在此山中"])
    assert v.rhymes(["白日依山尽", "长安万里城", "欲穷千里目", "更在此山中"], "xinyun")
    assert v.shared_rhyme(["春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "花落知多少"]) == frozenset()
    assert v.level_rhyme_groups("家") == {"麻"} and v.level_rhyme_groups("斜") >= {"麻"}
    assert v.level_rhyme_groups("月") == frozenset() and v.level_rhyme_groups("a") == frozenset()
    with pytest.raises(ValueError, match="rhyme book"):
        v.level_rhyme_groups("光", "guangyun")


def test_classical_tones():
    # the entering tone (入声) is oblique, though Mandarin reads these level
    for c in "国白石竹十一":
        assert v.is_oblique(c) and not v.is_level(c), c
        assert v.is_level(c, "xinyun"), c
    assert v.is_level("天") and not v.is_oblique("天") and v.is_oblique("月")
    assert v.is_level("看") and v.is_oblique("看")     # 多: level or oblique by reading
    assert v.tone_marks("天月看") == "平仄⊙"
    assert v.primary_is_level("光") and not v.primary_is_level("国")
    # a character 平水韵 lacks keeps its modern tones (们 men2) and never rhymes
    assert v.is_level("们") and v.level_rhyme_groups("们") == frozenset()


def test_patterns():
    wujue = v.patterns("wujue")
    assert wujue[0] == ("⊙仄平平仄", "⊙平⊙仄平", "⊙平平仄仄", "⊙仄仄平平")
    assert [v.pattern_name(p) for p in wujue] == ["仄起不入韵", "平起不入韵", "仄起入韵", "平起入韵"]
    qijue = v.patterns("qijue")
    assert qijue[0][0] == "⊙平⊙仄平平仄"           # ⊙仄 prefix flipped to ⊙平
    assert qijue[2][0] == "⊙平⊙仄仄平平"           # 仄起入韵 五言 -> 平起入韵 七言
    for form in v.FORMS:
        f = v.FORMS[form]
        for p in v.patterns(form):
            assert len(p) == f.lines and all(len(x) == f.length for x in p)
            for i in range(1, f.lines):
                # 对 inside a couplet, 粘 between couplets (the 2nd syllable)
                want = p[i - 1][1] if i % 2 == 0 else {"平": "仄", "仄": "平"}[p[i - 1][1]]
                assert p[i][1] == want, (form, i, p)
            for i in v.rhyme_positions(f.lines):
                assert p[i][-1] == "平"


def test_check_poem():
    assert v.check_poem(JINGYESI, "wujue") == []
    assert v.shared_rhyme(JINGYESI) == {"阳"} and v.shared_rhyme(JINGYESI, "xinyun") == {"唐"}
    problems = v.check_poem(JINGYESI, "wujue", tones="strict")
    assert len(problems) == 1 and "平仄" in problems[0]
    assert v.check_poem(GUANQUE, "wujue", tones="strict") == []
    assert v.check_poem(BAIDI, "qijue", tones="strict") == []
    assert v.check_poem(JINGYESI, "wujue", acrostic="床疑举低") == []
    assert "acrostic" in v.check_poem(JINGYESI, "wujue", acrostic="春夏秋冬")[0]
    broken = JINGYESI[:3] + ["低头思故月"]
    assert "level-tone" in v.check_poem(broken, "wujue")[0]
    assert v.check_poem(broken, "wujue", rhyme=False) == []
    mixed = JINGYESI[:3] + ["低头思故人"]              # level, but 真 vs 阳
    assert "share no rhyme group" in v.check_poem(mixed, "wujue")[0]
    assert "needs 4 lines" in v.check_poem(JINGYESI[:3], "wujue")[0]
    assert "has 5 characters" in v.check_poem(JINGYESI, "qijue")[0]
    assert "non-Chinese" in v.check_poem(["床前明月a"] + JINGYESI[1:], "wujue")[0]
    with pytest.raises(ValueError, match="unknown form"):
        v.check_poem(JINGYESI, "sonnet")


def test_rates_and_helpers():
    assert v.rhyme_rate([JINGYESI, GUANQUE, JINGYESI[:3] + ["低头思故人"]]) == pytest.approx(2 / 3)
    assert v.form_of(BAIDI).name == "qijue" and v.form_of(JINGYESI[:3]) is None
    assert v.split_poem("床前明月光，疑是地上霜。") == ["床前明月光", "疑是地上霜"]
    assert v.tone_marks("天月") == "平仄"
