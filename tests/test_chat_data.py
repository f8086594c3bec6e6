"""Chat corpus preparation on tiny synthetic wheels (no download)."""
import json
import zipfile
from pathlib import Path

import pytest

from chatbot import data as cd


def _conv(*groups):
    return {"messages": [[{"text": t, "sender": f"s{i % 2}"} for t in g]
                         for i, g in enumerate(groups)]}


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    chit = {f"c{i:03d}": _conv(["hi", f"how are  you {i}?"], [f"fine {i}"], ["good"])
            for i in range(60)}
    chit["lonely"] = _conv(["anybody there?"])                    # one turn: dropped
    chit["blank"] = _conv(["  "], ["hello"])                       # empty turn removed: dropped
    chit["z-repeat"] = chit["c001"]                                # exact repeat: dropped
    with zipfile.ZipFile(folder / cd.WHEELS["chitchat-dataset"][1], "w") as z:
        z.writestr("chitchat_dataset/dataset.json", json.dumps(chit))
    with zipfile.ZipFile(folder / cd.WHEELS["chatterbot-corpus"][1], "w") as z:
        z.writestr("chatterbot_corpus/data/english/greetings.yml",
                   "categories:\n- greetings\nconversations:\n- - Hello\n  - Hi there\n"
                   "- - What is 2?\n  - 2\n")
        z.writestr("chatterbot_corpus/data/chinese/greetings.yml",
                   "conversations:\n- - 你好\n  - 你好，朋友\n")
        z.writestr("chatterbot_corpus/data/german/greetings.yml",   # not a kept language
                   "conversations:\n- - Hallo\n  - Hallo du\n")
    return folder


def test_prepare_counts_splits_and_cleans(wheels, tmp_path):
    out = tmp_path / "chat"
    stats = cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None, persona=None)
    convs = [c for s in cd.SPLITS for c in cd.load_split(s, out)]
    assert stats["raw_conversations"] == 63 + 3 and stats["kept"] == len(convs) == 63
    assert stats["dropped"] == {"fewer than two turns": 2, "repeat of an earlier conversation": 1}
    c1 = next(c for c in convs if c["id"] == "chitchat/c001")
    assert c1["turns"] == ["hi how are you 1?", "fine 1", "good"] and c1["lang"] == "en"
    assert {c["lang"] for c in convs if c["source"] == "chatterbot"} == {"en", "zh"}
    assert any(c["turns"] == ["What is 2?", "2"] for c in convs)    # YAML numbers become text
    # a conversation lives in exactly one split, chosen by its id alone
    ids = [c["id"] for c in convs]
    assert len(ids) == len(set(ids))
    for s in cd.SPLITS:
        assert all(cd.split_of(c["id"]) == s for c in cd.load_split(s, out))
    table = cd.readme_section(stats)
    assert "| train | chitchat/en |" in table
    assert sum(v["conversations"] for g in stats["splits"].values() for v in g.values()) == 63


def test_rerun_skips_and_bad_wheel_is_refused(wheels, tmp_path, capsys):
    out = tmp_path / "chat"
    first = cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None, persona=None)
    assert cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None, persona=None) == first
    assert "already prepared" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="sha256 does not match"):
        cd.ensure_wheel("chitchat-dataset", wheels)


def test_missing_split_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m chatbot.data prepare"):
        cd.load_split("train", tmp_path)


def test_cli_stats_without_a_corpus_is_one_line(tmp_path, capsys):
    from shared.cli import run_cli
    with pytest.raises(SystemExit) as e:
        run_cli(cd.main, ["stats", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "run `python -m chatbot.data prepare`" in capsys.readouterr().err


def test_kdconv_and_persona_join_the_corpus(wheels, tmp_path, capsys):
    kd = tmp_path / "kdconv" / "film"
    kd.mkdir(parents=True)
    dialogs = [{"messages": [{"message": f"知道电影{i}吗？"},
                             {"message": "知道呀。", "attrs": [{"attrname": "x"}]}]}
               for i in range(30)]
    (kd / "dev.json").write_text(json.dumps(dialogs, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "chat"
    stats = cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=tmp_path / "kdconv")
    convs = [c for s in cd.SPLITS for c in cd.load_split(s, out)]
    kdconv = [c for c in convs if c["source"] == "kdconv"]
    assert len(kdconv) == 30 and all(c["lang"] == "zh" and c["turns"][1] == "知道呀。"
                                     for c in kdconv)
    assert all(cd.split_of(c["id"], (90, 5, 5)) == s for s in cd.SPLITS
               for c in cd.load_split(s, out) if c["source"] == "kdconv")
    persona = cd.load_persona()
    train = cd.load_split("train", out)
    mine = [c for c in train if c["source"] == "persona"]
    assert mine and {c["lang"] for c in mine} == {"en", "zh"}
    held_out = {cd._key(q) for part in ("validation", "evaluation")
                for qs in persona[part].values() for q in qs}
    assert not held_out & {cd._key(c["turns"][0]) for c in mine}   # held-out phrasings never train
    asked = {cd.clean(q) for t in persona["topics"] for q in t["questions"]}
    edited = [c["turns"][0] for c in mine if c["turns"][0] not in asked]
    assert len(edited) > len(mine) / 2                       # copies after the first are edited
    assert all(c["turns"][0] in asked for c in mine if c["id"].endswith("/0"))
    assert all(not c["turns"][0][0].islower() for c in mine      # typed as people type
               if c["lang"] == "en" and c["id"].endswith("/2") and c["turns"][0] not in asked)
    assert not [c for s in ("validation", "test") for c in cd.load_split(s, out)
                if c["source"] == "persona"]
    cd.prepare(wheels, tmp_path / "bare", verify=False, dialogs=None, kdconv=tmp_path / "missing")
    assert "KdConv not found" in capsys.readouterr().err and stats["kept"] > 63


def test_an_edited_persona_is_prepared_again(wheels, tmp_path, capsys, monkeypatch):
    persona = tmp_path / "persona.json"
    mine = cd.load_persona()
    persona.write_text(json.dumps(mine, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "chat"
    before = cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None, persona=persona)
    mine["topics"][0]["questions"].append("what are you called, please?")
    persona.write_text(json.dumps(mine, ensure_ascii=False), encoding="utf-8")
    after = cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None, persona=persona)
    assert "another persona file (or none), other edits" in capsys.readouterr().out
    grew = after["splits"]["train"]["persona/en"]["conversations"]
    assert grew == before["splits"]["train"]["persona/en"]["conversations"] + \
        len(mine["topics"][0]["answers"]) * mine["repeat"]
    assert any(c["turns"][0] == "what are you called, please?"
               for c in cd.load_split("train", out))
    monkeypatch.setattr(cd, "PERSONA_EDITS", cd.PERSONA_EDITS + 1)   # the edits' code changed
    cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None, persona=persona)
    assert "other edits of its questions or other everyday sources: rebuilding" in \
        capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="persona file .* is missing"):
        cd.prepare(wheels, out, verify=False, dialogs=None, kdconv=None,
                   persona=tmp_path / "gone.json")
    assert cd.load_split("train", out)                    # the prepared corpus is kept
