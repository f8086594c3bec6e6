"""Bot, CLI and batch behaviour on a tiny untrained chat model built in conftest.py
(quality is measured by `python -m chatbot.evaluate`)."""
import io
import json

import pytest

from chatbot.bot import MAX_CHARS, MAX_N, Bot, clean_history, is_chinese
from chatbot.format import SEP, source_text
from chatbot.train import pairs
from chatbot.cli import main as cli_main
from chatbot.cli import talk


@pytest.fixture(scope="module")
def bot(chat_model_dir):
    return Bot.load(chat_model_dir)


def test_training_pairs_use_the_recent_turns(bot):
    convs = [{"turns": ["hi", "hello there", "how are you?", "fine"]}]
    got = [(bot.tok.decode(s), bot.tok.decode(t)) for s, t in pairs(convs, bot.tok)]
    assert len(got) == 3
    assert got[2][1].strip() == "fine"
    assert source_text(["a", "b", "c"]) == f"b{SEP}c{SEP}"


def test_replies_are_seeded_distinct_and_never_hold_the_separator(bot):
    a = bot.replies(["hi", "hello!", "how are you?"], n=3, seed=4)
    b = bot.replies(["hi", "hello!", "how are you?"], n=3, seed=4)
    assert a == b and 1 <= len(a) <= 3
    assert len({r["reply"] for r in a}) == len(a)
    assert all(SEP not in r["reply"] and r["score"] < 0 for r in a)
    assert isinstance(bot.reply("hi", seed=1), str)
    # only the last two turns reach the model: older turns cannot change the reply
    assert bot.replies(["x y z", "hello!", "how are you?"], n=3, seed=4) == a


def test_stream_grows_to_the_reply(bot):
    """A part whenever the leading text changes, piece by piece, ending on the reply itself."""
    parts = list(bot.stream("how are you?", seed=3))
    assert parts == list(bot.stream("how are you?", seed=3))
    assert parts[-1] == bot.reply("how are you?", seed=3)
    assert len(parts) >= 5 and all(a != b for a, b in zip(parts, parts[1:]))
    assert all(SEP not in p for p in parts) and len(parts[0]) < len(parts[-1])
    grew = sum(len(b) > len(a) and b.startswith(a) for a, b in zip(parts, parts[1:]))
    assert grew >= len(parts) // 2             # mostly one candidate written on


def test_stream_can_move_between_threads(bot):
    # Gradio pulls each part of a streaming reply in whichever worker thread is free, and
    # torch's inference mode is per thread: a stream that held it across a yield left the
    # thread it began in inside inference mode for good, and a stream begun there later
    # failed on its next thread
    import torch
    from concurrent.futures import ThreadPoolExecutor
    want = list(bot.stream("how are you?", seed=3))
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        for _ in range(2):
            it = bot.stream("how are you?", seed=3)
            parts = [a.submit(next, it).result()]           # begins in thread a ...
            parts += b.submit(list, it).result()            # ... and ends in thread b
            assert parts == want
            assert not a.submit(torch.is_inference_mode_enabled).result()




@pytest.mark.parametrize("bad,msg", [("", "message is empty"), ("   ", "message is empty"),
                                     ([], "message is empty"), (["hi", ""], "message is empty"),
                                     (["", "hi"], "turn is empty"), (42, "list of messages"),
                                     ([1, 2], "list of messages")])
def test_bad_conversations_are_one_clear_error(bot, bad, msg):
    with pytest.raises(ValueError, match=msg):
        bot.replies(bad)


def test_repairable_input_warns(bot):
    with pytest.warns(UserWarning, match="cut to its last"):
        assert clean_history("hi " * MAX_CHARS)[-1].endswith("hi")
    with pytest.warns(UserWarning, match="above the cap"):
        assert len(bot.replies("hi", n=MAX_N + 5, seed=1)) <= MAX_N
    with pytest.raises(ValueError, match="temperature"):
        bot.replies("hi", temperature=0)


def test_cli_message_talk_and_errors(chat_model_dir, capsys):
    args = ["--model", str(chat_model_dir), "--seed", "2"]
    assert cli_main(args + ["--message", "hi there", "-n", "2", "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert 1 <= len(lines) <= 2 and {"reply", "score"} <= set(lines[0])
    with pytest.raises(ValueError, match="-n must be positive"):
        cli_main(args + ["--message", "hi", "-n", "0"])

    class Args:
        seed, temperature, top_p = 1, 0.8, 0.9
    out = io.StringIO()
    talk(Bot.load(chat_model_dir), Args, io.StringIO("hi\n\n/reset\nhow are you?\n/quit\nnever\n"),
         out)
    text = out.getvalue()
    assert text.count("bot> ") == 2 and "(new conversation)" in text


def test_batch_resumes_in_order_and_isolates_bad_items(chat_model_dir, tmp_path):
    inp = tmp_path / "chats.jsonl"
    inp.write_text('hi there\n{"history": ["hi", "hello", "what movie?"], "n": 2}\n'
                   '{"message": ""}\n{"message": "a", "history": ["b"]}\n{bad\n'
                   '{"message": "good night", "seed": 9}\n', encoding="utf-8")
    args = ["--input", str(inp), "--model", str(chat_model_dir), "--seed", "1"]
    full = tmp_path / "full.jsonl"
    assert cli_main(args + ["--output", str(full)]) == 0
    lines = [json.loads(x) for x in full.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in lines] == list(range(6))
    assert all("error" in lines[i] for i in (2, 3, 4)) and len(lines[1]["replies"]) <= 2
    part = tmp_path / "part.jsonl"
    text = full.read_text(encoding="utf-8").splitlines(keepends=True)
    part.write_text("".join(text[:1]) + text[1][:9], encoding="utf-8")
    assert cli_main(args + ["--output", str(part)]) == 0
    assert part.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")


def test_evaluation_runs_end_to_end(chat_rerank_dir, tmp_path, capsys):
    import shutil
    from chatbot import evaluate
    from shared.data import write_jsonl
    convs = [{"id": str(i), "source": "t", "lang": "en",
              "turns": ["hi", f"hello {i}", "how are you?", "fine thanks"]} for i in range(6)]
    convs += [{"id": f"z{i}", "source": "t", "lang": "zh", "turns": ["你好", f"你好 {i}", "谢谢"]}
              for i in range(4)]
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", convs)
    model = tmp_path / "models" / "chat"
    shutil.copytree(chat_rerank_dir, model)
    shutil.copytree(chat_rerank_dir.parent / "chat-backward", model.parent / "chat-backward")
    from chatbot.train import default_model_config
    from shared.checkpoint import load_model
    from tests.helpers import export_tiny
    export_tiny(model.parent / "chat-zh", load_model(model)[1], default_model_config,
                {"rebuild": "t"}, seed=2)          # a Chinese bot: Chinese pairs go to it
    assert evaluate.main(["--json", "--contexts", "5", "--ranking", "10", "--model", str(model),
                          "--data", str(tmp_path), "--tune", "--identity-seeds", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    en, zh = report["perplexity"]["en"], report["perplexity"]["zh"]
    assert en["pairs"] == 18 and zh["pairs"] == 8 and en["model_ppl"] > 1 and en["ngram4_ppl"] > 1
    assert en["random_context_ppl"] > 1
    zh_alone = evaluate.perplexities(Bot.load(model.parent / "chat-zh"), tmp_path)["zh"]
    assert zh["model_ppl"] == zh_alone["model_ppl"] != \
        evaluate.perplexities(Bot.load(model, languages=False), tmp_path)["zh"]["model_ppl"]
    half = report["perplexity"]["en_generation_ppl"]       # the chosen precision's decoder
    assert abs(half - en["model_ppl"]) < 0.02 * en["model_ppl"]
    assert report["generation"]["precision"] in ("fp16", "bf16", "fp32")
    r = report["ranking_en"]
    assert r["examples"] == 10 and 0 <= r["combined"] <= 1 and 0 <= r["tfidf_baseline"] <= 1
    assert report["replies_zh"]["contexts"] == 5 and 0 <= report["replies_en"]["bot"]["distinct_2"] <= 1
    assert report["identity"]["en"]["asked"] == 5 and report["speed"]["en_reply_p50_ms_batch1"] > 0
    assert report["speed"]["zh_reply_p50_ms_batch1"] > 0
    assert report["identity"]["zh"]["over_seeds"]["asked"] == 10
    bot = Bot.load(model)                     # each bot tuned on its own language
    for folder, own, langs in ((model, bot, ["en"]), (model.parent / "chat-zh", bot.zh, ["zh"])):
        tuned = json.loads((folder / "card.json").read_text())["rerank"]
        best = report["tuning"][folder.name]["best"]
        assert report["tuning"][folder.name]["languages"] == langs
        assert (tuned["backward"], tuned["overlap"]) == (best["backward"], best["overlap"])
        assert own.weights == {k: tuned[k] for k in ("backward", "overlap", "retrieved", "gap",
                                                     "selector")}
        gate = report["tuning"][folder.name]["gap"]
        assert set(gate["by_gap"]) == {str(g) for g in evaluate.GAPS}
        assert tuned["gap"] == gate["best"] is None     # a tiny bot never says the name: a tie,
                                                        # and ties go to the widest gate (none)
    joint = evaluate.tune(Bot.load(model, languages=False), tmp_path, n=10)   # one bot: both
    assert joint["languages"] == ["en", "zh"] and joint["validation_examples"] == 18


def test_retrieval_finds_the_reply_to_the_nearest_message(chat_model_dir, tmp_path):
    from chatbot.retrieval import Retrieval
    from shared.checkpoint import load_model
    from tests.conftest import CHAT_PAIRS
    _, tok, _ = load_model(chat_model_dir)
    Retrieval.build(CHAT_PAIRS, tok).save(tmp_path / "r.npz")
    index = Retrieval.load(tmp_path / "r.npz", tok)
    assert len(index) == 4
    assert index.search("do you like music at all?", 1)[0][0] == "yes, jazz mostly."
    assert index.search("", 3) == [] and index.search("zzzz qqq", 3) == []
    assert index.similarity("do you like music?", "Do you like MUSIC?") == pytest.approx(1.0)
    assert index.similarity("do you like music?", "") == 0.0
    assert 0 < index.similarity("do you like music?", "music is fine") < 1


def test_replies_are_reranked_and_say_where_they_came_from(chat_rerank_dir):
    bot = Bot.load(chat_rerank_dir)
    bot.TEMPERATURE = 0.8               # the sampling this test's tiny models were written for
    assert bot.backward is not None and bot.index is not None
    replies = bot.replies("what is your name?", n=10, seed=1)
    assert {r["source"] for r in replies} <= {"generated", "retrieved"}
    assert "I am a tiny test bot." in [r["reply"] for r in replies]
    assert [r["score"] for r in replies] == sorted((r["score"] for r in replies), reverse=True)
    assert replies == bot.replies("what is your name?", n=10, seed=1)
    bot.weights["overlap"] = 2.0
    for r in bot.replies("what is your name?", n=10, seed=1):
        w = bot.weights
        assert r["score"] == pytest.approx(r["forward"] + w["backward"] * r["backward"]
                                           + w["overlap"] * r["overlap"]
                                           + w["retrieved"] * (r["source"] == "retrieved"),
                                           abs=3e-4)
    ungated = bot.replies("what is your name?", n=10, seed=1)
    assert {r["source"] for r in ungated} == {"generated", "retrieved"}
    bot.weights["gap"] = 1e9                        # the fluency gate: wide open, then shut
    assert bot.replies("what is your name?", n=10, seed=1) == ungated
    bot.weights["gap"] = -1e9
    shut = bot.replies("what is your name?", n=10, seed=1)
    assert shut and {r["source"] for r in shut} == {"generated"}
    pool = {"a b": "generated", "c d": "generated", "e f": "retrieved", "g h": "retrieved"}
    bot.weights["gap"] = 1.0                        # the floor: 1 nat below the best generated
    assert bot.fluent(list(pool), [-2.0, -3.0, -2.9, -3.1], pool) == [True, True, True, False]
    only = {"e f": "retrieved"}                     # nothing generated: nothing to compare with
    assert bot.fluent(list(only), [-50.0], only) == [True]
    bot.weights["gap"] = None
    assert list(bot.stream("what is your name?", seed=3))[-1] == \
        bot.reply("what is your name?", seed=3)
    assert Bot.load(chat_rerank_dir, rerank=False).backward is None


def test_chinese_messages_go_to_the_chinese_bot(chat_rerank_dir, tmp_path):
    """With chat-zh (and chat-zh-backward) beside chat, a Chinese message is answered by that
    bot in every path (one reply, a batch mixing languages, a stream, the evaluation's scores);
    English ones stay with the joint bot. It has its own index, backward model and weights where
    its folders hold them, else the joint bot's."""
    import shutil
    from chatbot.train import default_model_config
    from shared.checkpoint import load_model
    from shared.tokenizers import SentencePieceTokenizer
    from tests.helpers import export_tiny
    root = tmp_path / "models"
    for name in ("chat", "chat-backward"):
        shutil.copytree(chat_rerank_dir.parent / name, root / name)
    _, tok, _ = load_model(root / "chat")
    from chatbot.retrieval import Retrieval
    Retrieval.build([("你好", "你好！朋友")], tok).save(tmp_path / "zh.npz")
    export_tiny(root / "chat-zh", tok, default_model_config, {"rebuild": "t"}, seed=2,
                extra_files={"retrieval.npz": tmp_path / "zh.npz"})
    export_tiny(root / "chat-zh-backward", tok, default_model_config, {"rebuild": "t"}, seed=3)
    bot, joint = Bot.load(root / "chat"), Bot.load(root / "chat", languages=False)
    alone = Bot.load(root / "chat-zh")            # the Chinese models as a bot of their own
    assert joint.zh is None and bot.zh is not None and len(bot.zh.index) == 1   # its own
    assert bot.zh.backward is not bot.backward and bot.for_lang("en") is bot
    assert bot.zh.weights == bot.weights and bot.zh.weights is not bot.weights   # not tuned
    assert bot.for_turns([]) is bot and joint.generate([]) == []
    assert bot.for_turns(["hi", "你好吗"]) is bot.zh and bot.for_turns(["你好", "ok?"]) is bot
    alone.weights = dict(bot.weights)
    zh, en = "你好，朋友", "how are you?"
    assert bot.replies(zh, n=3, seed=1) == alone.replies(zh, n=3, seed=1)
    assert bot.replies(zh, n=3, seed=1) != joint.replies(zh, n=3, seed=1)
    assert bot.replies(en, n=3, seed=1) == joint.replies(en, n=3, seed=1)
    jobs = [([en], 2, 5), ([zh], 2, 6), (["hi", en], 1, 7)]
    assert bot.generate(jobs) == [joint.generate(jobs[:1])[0], alone.generate(jobs[1:2])[0],
                                  joint.generate(jobs[2:])[0]]
    assert list(bot.stream(zh, seed=4))[-1] == alone.reply(zh, seed=4)
    card = json.loads((root / "chat-zh" / "card.json").read_text())
    card["rerank"] = {"backward": 3.0, "overlap": 1.0}              # tuned on its own
    (root / "chat-zh" / "card.json").write_text(json.dumps(card))
    assert Bot.load(root / "chat").zh.weights == {**bot.weights, "backward": 3.0, "overlap": 1.0}
    other = SentencePieceTokenizer.train(["完全 不同 的 词"] * 50 + ["other words"] * 50,
                                         vocab_size=30, character_coverage=1.0)
    shutil.rmtree(root / "chat-zh")
    export_tiny(root / "chat-zh", other, default_model_config, {"rebuild": "t"})
    with pytest.raises(ValueError, match="another tokenizer"):
        Bot.load(root / "chat")


def test_chat_messages_format(chat_model_dir):
    bot = Bot.load(chat_model_dir)
    msgs = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello!"}, {"role": "user", "content": "how are you?"}]
    assert clean_history({"messages": msgs}) == clean_history(msgs) == ["hello!", "how are you?"]
    assert bot.reply({"messages": msgs}, seed=2) == bot.reply(["hi", "hello!", "how are you?"],
                                                              seed=2)
    for bad, why in [([{"role": "user"}], "not a"), ([{"role": "bot", "content": "x"}], "role"),
                     ([{"role": "user", "content": 5}], "not a string"),
                     ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                      "last message"), ({"msgs": []}, "messages")]:
        with pytest.raises(ValueError, match=why):
            clean_history(bad)


def test_identity_counts_every_seed_of_every_phrasing():
    from chatbot import evaluate

    class Named:                           # names itself only when sampled with seed 0
        def reply(self, message, seed=0):
            return "I'm Shiyu." if seed == 0 else "I don't know."

    one = evaluate.identity(Named())["en"]  # the i-th phrasing with seed i
    assert one["answered_with_name"] == 1 and one["answers"][0] == "I'm Shiyu."
    assert "over_seeds" not in one
    over = evaluate.identity(Named(), seeds=3)["en"]["over_seeds"]
    assert over == {"seeds": 3, "named": 5, "asked": 15, "per_phrasing": [1] * 5}
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["--identity-seeds", "0"])
    assert stop.value.code == 2


@pytest.mark.slow
def test_the_cli_refuses_bad_input_with_status_2_and_one_line(chat_model_dir, tmp_path):
    """`python -m chatbot`: a message it cannot answer, a missing model folder, a batch without
    its output, each one line on stderr starting "error:", exit status 2, no traceback."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    cases = [["--message", "   ", "--model", str(chat_model_dir)],
             ["--message", "hi", "--model", str(tmp_path / "nope")],
             ["--input", str(tmp_path / "missing.txt"), "--model", str(chat_model_dir)],
             ["--message", "hi", "-n", "0", "--model", str(chat_model_dir)]]
    for args in cases:
        r = subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=root,
                           capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), \
            (args, r.returncode, r.stderr)
        assert r.stdout == "", (args, r.stdout)


def test_is_chinese_reads_the_messages_language():
    assert is_chinese("你好") and is_chinese("你好 ok") and is_chinese("我喜欢 jazz")
    assert not is_chinese("hello 你") and not is_chinese("hi!") and not is_chinese("")
    assert not is_chinese("123 ?!") and is_chinese("好的，谢谢！")


@pytest.mark.parametrize("message, same, other", [
    ("hello friend", ["hi there friend", "good to see you"], ["你好朋友", "谢谢你朋友"]),
    ("你好朋友", ["我很好朋友", "谢谢你朋友"], ["hello to you friend", "hi friend"])])
def test_candidates_in_the_other_language_are_dropped(chat_model_dir, message, same, other):
    """Replies come in the message's language whenever any candidate is in it: retrieved
    replies in both languages join the generated ones, and none in the other is returned."""
    from shared.checkpoint import load_model

    class Index:                       # retrieval that finds replies in both languages
        def search(self, text, k):
            return [(r, 1.0) for r in same + other][:k]

        def similarity(self, a, b):
            return 0.0
    model, tok, card = load_model(chat_model_dir)
    bot = Bot(model, tok, card)
    bot.index = Index()
    bot.weights["retrieved"] = 100.0     # retrieved replies first, whatever the tiny model says
    out = bot.replies(message, n=MAX_N, seed=1)
    zh = is_chinese(message)
    assert out and all(is_chinese(r["reply"]) == zh for r in out), out
    assert {r["reply"] for r in out if r["source"] == "retrieved"} == set(same)
