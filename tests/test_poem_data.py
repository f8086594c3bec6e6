"""Poem corpus preparation on a tiny synthetic tarball (no download)."""
import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from poetry.poems import data as pd
from poetry.poems.novelty import LineIndex

FIX = Path(__file__).parent / "fixtures" / "poems"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def tarball(tmp_path: Path) -> Path:
    """A tarball laid out like chinese-poetry's npm package, with decoys that must be ignored."""
    path = tmp_path / "chinese-poetry-test.tgz"
    song = json.dumps([{"id": "s1", "author": "宋人", "title": "秋夜",
                        "paragraphs": ["宋人寫的詩，夜涼堦下秋。", "明月照高樓，清光滿九州。"]},
                       {"id": "s2", "author": "x", "title": "x",      # a copy of a Tang poem
                        "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]}],
                      ensure_ascii=False).encode()
    decoy = json.dumps([{"id": "x", "author": "x", "title": "x",
                         "paragraphs": ["錯誤文件詩，不應在這裏。", "錯誤文件詩，不應在這裏。"]}],
                       ensure_ascii=False).encode()
    with tarfile.open(path, "w:gz") as tar:
        # the 1000 file first: prepare must order members numerically, not by archive order
        _add(tar, "package/dist/quantangshi/poet.tang.1000.json",
             (FIX / "tang_sample_1000.json").read_bytes())
        _add(tar, "package/dist/quantangshi/poet.tang.0.json",
             (FIX / "tang_sample.json").read_bytes())
        _add(tar, "package/dist/quantangshi/poet.song.0.json", song)
        _add(tar, "package/dist/quantangshi/error/poet.tang.0.json", decoy)
    return path


def _all(out: Path) -> list[dict]:  # the Tang splits
    return [r for s in pd.SPLITS for r in pd.load_split(s, out)]


def test_prepare_filters_and_normalises(tarball, tmp_path):
    out = tmp_path / "poems"
    stats = pd.prepare(tarball, out, verify=False)
    rows = _all(out)
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == ["p1", "p2", "p3", "p4", "p5", "q2", "q5", "q6"]
    assert stats["raw_poems"] == 14 and stats["kept"] == 8
    # q3's "[爽]" makes a 7-symbol line among 5-character ones: a shape failure
    assert stats["dropped"] == {"duplicate body": 1, "not 4/8 lines of 5/7 characters": 3,
                                "unclean characters": 1, "couplet punctuation": 1}
    p1 = by_id["p1"]
    assert p1["form"] == "wujue" and p1["title"] == "登鹳雀楼" and p1["author"] == "王之涣"
    assert p1["lines"] == ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    assert p1["body"] == "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
    assert {by_id[i]["form"] for i in ("p3", "p4", "p5")} == {"qijue", "wulv", "qilv"}
    # the variant note is dropped, the main reading kept; '？' closing line 1 is normalised
    assert by_id["q2"]["lines"][1] == "春来发几枝"
    assert by_id["q6"]["body"] == "君家何处住，妾住在横塘。停船暂借问，或恐是同乡。"
    assert by_id["q5"]["title"] == "帝京篇"
    assert stats["forms"] == {"wujue": 4, "qijue": 1, "wulv": 2, "qilv": 1}
    assert sum(v["total"] for v in stats["splits"].values()) == 8
    lines = LineIndex.load(out / "lines.npz.xz")
    assert "秋风吹白波" in lines                # from a 6-line poem: novelty covers every form
    assert "物华新雨余" in lines and "宋人写的诗" in lines   # Song lines too
    assert "夜凉堦下秋" in lines and "夜凉阶下秋" in lines  # as written and normalised
    assert "错误文件诗" not in lines            # error files are not read
    # Song poems: their own splits; the copy of a Tang poem is a duplicate; variants normalised
    song = [r for s in pd.SONG for r in pd.load_split(s, out)]
    assert [r["lines"][1] for r in song] == ["夜凉阶下秋"] and song[0]["title"] == "秋夜"
    assert stats["song"]["kept"] == 1 and stats["song"]["dropped"] == {"duplicate body": 1}
    assert stats["variants_normalised"]["poems_characters"] >= 1


def test_prepare_is_deterministic_and_cached(tarball, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    pd.prepare(tarball, a, verify=False)
    pd.prepare(tarball, b, verify=False, force=True)
    for name in pd.OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for split in pd.SPLITS:
        assert all(pd.split_of(r["lines"]) == split for r in pd.load_split(split, a))
    before = (a / "train.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    pd.prepare(tarball, a, verify=False)
    assert "up to date" in capsys.readouterr().out
    assert (a / "train.jsonl").stat().st_mtime_ns == before


def test_split_proportions_are_stable():
    rng = random.Random(0)
    keys = [["".join(chr(0x4E00 + rng.randrange(2000)) for _ in range(5)) for _ in range(2)]
            for _ in range(20000)]
    counts = {s: 0 for s in pd.SPLITS}
    for k in keys:
        counts[pd.split_of(k)] += 1
    assert 0.95 < counts["train"] / 20000 < 0.97
    assert 0.015 < counts["validation"] / 20000 < 0.025 and 0.015 < counts["test"] / 20000 < 0.025
    assert pd.split_of(["白日依山尽", "黄河入海流"]) == pd.split_of(["白日依山尽", "黄河入海流", "x"])


def test_integrity_and_missing_npm(tmp_path, monkeypatch):
    bad = tmp_path / "fake.tgz"
    bad.write_bytes(b"not the package")
    with pytest.raises(SystemExit, match="integrity"):
        pd.ensure_tarball(bad)
    monkeypatch.setattr(pd.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="npm pack chinese-poetry@2.0.1"):
        pd.ensure_tarball(tmp_path / "absent.tgz")


def test_clean_title_and_keywords():
    assert pd.clean_title("帝京篇十首 一") == "帝京篇"
    assert pd.clean_title("唵字贊（義靜三藏於西天取得此梵書）") == "唵字贊"
    assert pd.clean_title("奉和麟德殿宴百僚應[制]") == "奉和麟德殿宴百僚應"
    assert len(pd.clean_title("一" * 30)) == 10
    poem = {"lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]}
    body = "".join(poem["lines"])
    for seed in range(20):
        kws = pd.keywords(poem, random.Random(seed), k=2)
        assert len(kws) == 2 and len(set(kws)) == 2
        for w in kws:
            assert 1 <= len(w) <= 2 and w in body and not set(w) & pd._FUNCTION
    assert pd.keywords(poem, random.Random(1), 2) == pd.keywords(poem, random.Random(1), 2)


def test_segments_and_body():
    segs = pd.segments("國破山河在（一作「國破」），城春草木深。「感時」花濺淚？")
    assert [s for s, _ in segs] == ["國破山河在", "城春草木深", "感時花濺淚"]
    assert pd.body(["白日依山尽", "黄河入海流"]) == "白日依山尽，黄河入海流。"
