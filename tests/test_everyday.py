"""The everyday dialogue corpora (chatbot/everyday.py), read from folders laid out as
../shared/data/dialogs is, holding a few lines written for these tests; and Chinese
punctuation in replies (chatbot/format.fullwidth)."""
import csv
import json
import zipfile
from pathlib import Path

import pytest

from chatbot import everyday
from chatbot.format import fullwidth

SAMPLES = Path(__file__).parent / "fixtures" / "samples"     # the chat wheels, sampled


@pytest.fixture(scope="module")
def dialogs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialogs")
    for folder in ("dailydialog", "topicalchat", "commonsense", "personachat-valid",
                   "personality-chat", "xdailydialog", "c3d", "lccc-sample", "cped"):
        (root / folder).mkdir()
    dd = [{"data_split": "train", "dialogue_id": "dd-train-0",
           "turns": [{"utterance": "Want  some tea?"}, {"utterance": "Yes, please."}]},
          {"data_split": "train", "dialogue_id": "dd-train-1",          # a duplicate
           "turns": [{"utterance": "Want some tea?"}, {"utterance": "Yes, please."}]},
          {"data_split": "test", "dialogue_id": "dd-test-0",            # also in train
           "turns": [{"utterance": "Want some tea?"}, {"utterance": "Yes, please."}]},
          {"data_split": "test", "dialogue_id": "dd-test-1",
           "turns": [{"utterance": "Is it raining?"}, {"utterance": "Not yet."}]}]
    with zipfile.ZipFile(root / "dailydialog" / "data.zip", "w") as z:
        z.writestr("data/dialogues.json", json.dumps(dd))
    (root / "topicalchat" / "valid_freq.json").write_text(json.dumps(
        {"t1": {"content": [{"message": f"turn {i}"} for i in range(9)]}}))
    (root / "commonsense" / "valid.json").write_text(json.dumps(
        {"c1": {"context": "x", "speaker": "A", "turns": ["I lost my keys", "Oh no!"]}}))
    (root / "personachat-valid" / "En_persona_valid.json").write_text(json.dumps(
        [{"persona": [], "dialogue": [["__SILENCE__", "hi there"], ["hello", "how are you"]]}]))
    with open(root / "personality-chat" / "qna_chitchat_the_friend.tsv", "w",
              encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["Question", "Answer", "Source", "Metadata"])
        w.writerow(["Are you real?", "I'm a bot.", "x", "y"])
    (root / "xdailydialog" / "dialogues_text_Zh.txt").write_text(
        "要喝茶吗？ __eou__ 好的，谢谢。 __eou__\n", encoding="utf-8")
    (root / "c3d" / "c3-d-dev.json").write_text(json.dumps(
        [[["男：你下午有空吗?", "女：有，怎么了？"], [], "1-1"]], ensure_ascii=False),
        encoding="utf-8")
    (root / "lccc-sample" / "toy_train.txt").write_text(
        "今 天 好 热 啊\t是 啊 ， 开 空 调 吧\n" + "长" * 70 + "\t太长了\n", encoding="utf-8")
    (root / "lccc-sample" / "toy_valid.txt").write_text("", encoding="utf-8")
    (root / "lccc-sample" / "toy_data.json").write_text(json.dumps(
        {"train": [["晚 饭 吃 什 么", "面 条"]]}, ensure_ascii=False), encoding="utf-8")
    with open(root / "cped" / "valid_split.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Dialogue_ID", "Speaker", "Utterance"])
        for row in (["d1", "甲", "你来了"], ["d1", "甲", "快坐"], ["d1", "乙", "好"]):
            w.writerow(row)
    return root


def test_every_source_reads_as_conversations(dialogs):
    convs = {}
    for c in everyday.conversations(dialogs):
        convs.setdefault(c["source"], []).append(c)
        assert c["licence"] == everyday.LICENCES[c["source"]][1]
        assert c["lang"] == everyday.LICENCES[c["source"]][0]
    assert sorted(convs) == sorted(everyday.LICENCES)
    dd = convs["dailydialog"]
    assert [(c["split"], c["turns"]) for c in dd] == [
        ("train", ["Want some tea?", "Yes, please."]), ("test", ["Is it raining?", "Not yet."])]
    assert convs["topicalchat"][0]["turns"] == [f"turn {i}" for i in range(6)]
    assert convs["personachat"][0]["turns"] == ["hi there", "hello", "how are you"]
    assert convs["personality"][0]["turns"] == ["Are you real?", "I'm a bot."]
    assert convs["xdailydialog"][0]["turns"] == ["要喝茶吗？", "好的，谢谢。"]
    assert convs["c3d"][0]["turns"] == ["你下午有空吗?", "有，怎么了？"]     # speakers stripped
    assert [c["turns"] for c in convs["lccc"]] == [["今天好热啊", "是啊，开空调吧"],
                                                  ["晚饭吃什么", "面条"]]    # long post dropped
    assert convs["cped"][0]["turns"] == ["你来了，快坐", "好"]              # one speaker merged
    assert everyday.missing(dialogs) == []


def test_commercial_only_leaves_out_the_non_commercial_sources(dialogs):
    kept = {c["source"] for c in everyday.conversations(dialogs, commercial_only=True)}
    assert kept == {s for s, (_, _, ok) in everyday.LICENCES.items() if ok}
    assert kept == {"topicalchat", "personality", "cped"}


def test_prepare_takes_them_in_with_their_licences(dialogs, tmp_path):
    from chatbot import data
    stats = data.prepare(SAMPLES, tmp_path / "all", verify=False, kdconv=None,
                         dialogs=dialogs)
    assert set(stats["licences"]) == set(everyday.LICENCES)
    tests = data.load_split("test", tmp_path / "all")
    assert ["Is it raining?", "Not yet."] in [c["turns"] for c in tests]   # its own split
    some = data.prepare(SAMPLES, tmp_path / "some", verify=False, kdconv=None,
                        dialogs=dialogs, commercial_only=True)
    assert set(some["licences"]) == {"topicalchat", "personality", "cped"}
    rows = [c for s in ("train", "validation", "test")
            for c in data.load_split(s, tmp_path / "some")]
    assert not {c["source"] for c in rows} & {"dailydialog", "c3d", "lccc", "xdailydialog"}


@pytest.mark.parametrize("text, want", [
    ("你好吗?", "你好吗？"), ("我喜欢电影.", "我喜欢电影。"), ("好的,谢谢!", "好的，谢谢！"),
    ("价格是3.5元.", "价格是3.5元。"), ("嗯...好吧", "嗯...好吧"), ("hello, world.", "hello, world."),
    ("OK, 好", "OK, 好")])
def test_chinese_replies_take_full_width_punctuation(text, want):
    assert fullwidth(text) == want
