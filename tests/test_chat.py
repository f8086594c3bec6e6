"""Bot, CLI and batch behaviour on a tiny untrained chat model built in conftest.py
(quality is measured by `python -m chatbot.evaluate`)."""
import io
import json

import pytest

from chatbot.bot import MAX_CHARS, MAX_N, Bot, clean_history
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
    parts = list(bot.stream("how are you?", seed=3))
    assert parts and parts == list(bot.stream("how are you?", seed=3))
    assert all(SEP not in p for p in parts) and len(parts[-1]) >= len(parts[0])


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


def test_evaluation_runs_end_to_end(chat_model_dir, tmp_path, capsys):
    from chatbot import evaluate
    from shared.data import write_jsonl
    convs = [{"id": str(i), "source": "t", "lang": "en",
              "turns": ["hi", f"hello {i}", "how are you?", "fine thanks"]} for i in range(6)]
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", convs)
    assert evaluate.main(["--json", "--contexts", "5", "--model", str(chat_model_dir),
                          "--data", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    ppl = report["perplexity"]
    assert ppl["test_pairs"] == 18 and ppl["model_ppl"] > 1 and ppl["ngram"]["test_ppl"] > 1
    assert abs(ppl["fp16_generation_ppl"] - ppl["model_ppl"]) < 0.01 * ppl["model_ppl"]
    assert report["replies"]["replies"] == 5 and 0 <= report["replies"]["distinct_2"] <= 1
    assert report["speed"]["reply_p50_ms_batch1"] > 0
