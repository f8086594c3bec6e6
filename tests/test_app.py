"""The app as a user's script sees it: launched on loopback, called through gradio_client."""
import json
import re
import time
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file

from app import build_app
from server import batch, files, handlers, models
from server.chat import _text
from tests.helpers import serving


@pytest.fixture(scope="module")
def client(poem_model_dir, chat_model_dir):
    """The whole server (app.server: the page and the /v1 routes) on a port of its own."""
    import app
    with serving(app.server(poem_dir=poem_model_dir, tune_dir=None,   # the shipped tune model
                            chat_dir=chat_model_dir)) as address:
        c = Client(address, verbose=False)
        yield c
        c.close()


VERSE = re.compile(r"[\u4e00-\u9fff]+[，。]")


def test_write_poems_endpoint(client):
    text, notes, files = client.predict("明月", "wujue", 2, "", "", True, False, 0.8, "1",
                                        api_name="/write_poems")
    assert client.predict("明月", api_name="/write_poems")[0].startswith("明月 · 七绝\n")
    assert client.predict(theme="春", form="wujue", seed="2", keywords="春风",
                          api_name="/write_poems")[0].startswith("春 · 五绝\n")
    poems = [p for p in text.split("\n\n") if p.strip()]
    assert len(poems) == 2
    txt, jsonl = (Path(f) for f in files)             # the downloads: as shown, and as data
    assert txt.read_text(encoding="utf-8") == text + "\n"
    rows = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["lines"][0] for r in rows] == [p.split("\n")[1][:-1] for p in poems]
    assert notes.count("score") == 2 and "**Poem 2**" in notes


def test_the_poem_text_holds_the_poem_and_its_details_go_under_it(client):
    """What the copy button and poems.txt take is the title and the verses; the plan and the
    score are in the details under the poem and in poems.jsonl."""
    text, details, files = client.predict("明月", "wujue", 1, "", "", True, False, 0.8, "1",
                                          api_name="/write_poems")
    title, *verses = text.split("\n")
    assert title == "明月 · 五绝" and len(verses) == 4, text
    assert all(VERSE.fullmatch(v) for v in verses), text
    assert Path(files[0]).read_text(encoding="utf-8") == text + "\n"
    (row,) = [json.loads(x) for x in Path(files[1]).read_text(encoding="utf-8").splitlines()]
    assert row["keywords"] and isinstance(row["score"], float)
    assert details.startswith(f"关键词 {' '.join(row['keywords'])} · score {row['score']:.3f}")


def test_with_no_seed_the_streamed_poem_is_the_poem_shown(client):
    job = client.submit("秋思", "wujue", 1, "", "", True, False, 0.8, "",
                        api_name="/write_poems")
    job.result()
    partials = [o[0] for o in job.outputs()]
    final = partials[-1]
    assert len(partials) > 5 and all(final.startswith(p) for p in partials), partials


def test_notes_are_this_threads_own():
    import threading
    import warnings

    with handlers.notes() as mine:
        other = threading.Thread(target=warnings.warn, args=("another user's note",))
        other.start()
        other.join()
        warnings.warn("my note")
        warnings.warn("my note")
    assert mine == ["my note"]
    with handlers.notes() as again:              # the same note next time too, not once only
        warnings.warn("my note")
    assert again == ["my note"]


def test_streaming_partials_grow(client):
    job = client.submit("秋思", "wujue", 1, "春夏秋冬", "", True, False, 0.8, "3",
                        api_name="/write_poems")
    job.result()
    partials = [o[0] for o in job.outputs()]
    title, *verses = partials[-1].split("\n")
    assert len(partials) > 5 and title == "秋思 · 五绝"
    assert len(verses) == 4 and verses[0].startswith("春") and verses[0].endswith("，")
    # the poem streams in as it is shown at the end, title first and one verse a line: each
    # part is a start of the poem shown, longer than the one before, the last the poem itself
    *parts, final = partials
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(parts, parts[1:]))
    assert parts[-1] == final
    assert partials[0].startswith("秋思 · 五绝\n春")


def test_bad_input_is_one_clear_message(client):
    with pytest.raises(Exception, match="no Chinese characters"):
        client.predict("hello", "wujue", 1, "", "", True, False, 0.8, 1, api_name="/write_poems")
    with pytest.raises(Exception, match="acrostic"):
        client.predict("春", "wujue", 1, "春夏", "", True, False, 0.8, 1, api_name="/write_poems")


@pytest.mark.parametrize("api,kwargs,msg", [
    ("/write_poems", {"theme": "明月", "temperature": 5.0}, r"maximum value 1\.5|from 0\.3 to 1\.5"),
    ("/write_poems", {"theme": "明月", "n": 0}, r"minimum value 1|whole number from 1"),
    ("/write_poems", {"theme": "明月", "n": 2.5}, r"whole number|step"),
    ("/write_poems", {"theme": "明月", "seed": "-3"}, "seed must be a whole number from 0"),
    ("/write_tunes", {"temperature": 0.1}, r"minimum value 0\.5|from 0\.5 to 1\.5"),
    ("/write_tunes", {"n": 99}, r"maximum value|whole number from 1"),
    ("/write_tunes", {"tempo": 1000}, r"maximum value 240|from 40 to 240"),
    ("/reply", {"conversation": ["hi"], "temperature": 5.0}, "chat temperature must be"),
    ("/chat", {"message": "hi", "temperature": 0.0}, r"minimum value 0\.3|from 0\.3"),
])
def test_every_number_is_checked_against_the_pages_limits(client, api, kwargs, msg):
    # the API takes no value the page's sliders would not allow (Gradio checks a slider's
    # range; the app checks what has no slider: /reply, seeds); the server stays up
    with pytest.raises(Exception, match=msg):
        client.predict(**kwargs, api_name=api)
    assert client.predict(["hi"], api_name="/reply")


def test_user_errors_are_one_log_line_not_a_traceback(client, capfd, caplog):
    for kwargs, api in [({"message": "   "}, "/chat"), ({"conversation": ["hi"], "seed": "x"},
                        "/reply"), ({"theme": "hello"}, "/write_poems"),
                        ({"theme": "明月", "temperature": 5.0}, "/write_poems"),
                        ({"theme": "明月", "form": "xx"}, "/write_poems"),
                        ({"theme": "明月", "temperature": "hot"}, "/write_poems")]:
        with pytest.raises(Exception):
            client.predict(**kwargs, api_name=api)
    assert "Traceback" not in capfd.readouterr().err
    refused = [r.getMessage() for r in caplog.records if r.name == "shiyu.app"]
    assert len(refused) == 6 and all(m.startswith("refused: ") for m in refused)
    assert refused[3] == "refused: Temperature: Value 5.0 is greater than maximum value 1.5."
    assert refused[4].startswith("refused: Form 体裁: ")


def test_what_is_dropped_or_odd_is_said_once(client, monkeypatch):
    _, notes, _ = client.predict(theme="明月hello", seed="1", api_name="/write_poems")
    assert notes.endswith("\n\n⚠ the theme's non-Chinese characters were dropped: hello")
    assert notes.count("dropped") == 1
    with pytest.raises(Exception, match="start line 1 'hello' is not Chinese"):
        client.predict(theme="明月", start="hello there", api_name="/write_poems")
    with pytest.raises(Exception, match="^the opening bars hello are not valid ABC"):
        client.predict(start="hello", api_name="/write_tunes")
    toasts = []
    monkeypatch.setattr(gr, "Warning", toasts.append)
    handlers.write_tunes("6/8", "dmaj", "reel", "", 1, 1.0, "1")    # the page shows it as a toast
    assert len(toasts) == 1 and re.fullmatch(r"only \d+ of the [\d,]+ training tunes in 6/8 are "
                                             r"'reel'; 'reel' tunes are mostly in 2/2", toasts[0])


def test_write_tunes_endpoint(client):
    abc, svg, audio, abc_file = client.predict("3/4", "Gmaj", "song", "", 1, 1.0, "2",
                                               api_name="/write_tunes")
    assert "M:3/4" in abc and "K:Gmaj" in abc and "<svg" in svg
    assert audio and [Path(f).suffix for f in abc_file] == [".abc", ".mid", ".wav"]
    assert "Q:1/4=120" in abc and 'style="width:100%;height:auto"' in svg   # fits its column
    two, scores, _, files = client.predict(meter="6/8", key="D", n=2, seed="4", tempo=90,
                                           api_name="/write_tunes")
    assert two.count("Q:1/4=90") == 2 and scores.count("<svg") >= 2 and "Tune 2" in scores
    # each score under a line of its details: number, rhythm, form and score
    assert re.search(r"<p><b>Tune 1</b> · jig · \w+( form)? · score -?\d+\.\d{3} · the one "
                     r"you hear</p>", scores), scores[:300]
    assert [Path(f).name for f in files] == ["tunes.abc", "tune-1.mid", "tune-1.wav",
                                             "tune-2.mid", "tune-2.wav"]
    assert Path(files[1]).read_bytes()[:4] == b"MThd"
    assert Path(files[2]).read_bytes()[:4] == b"RIFF" and Path(files[4]).stat().st_size > 1000
    jig, *_ = client.predict("6/8", "D", "jig", "", 1, 1.0, "3", "AABB", api_name="/write_tunes")
    body = jig.split("K:D")[1]
    assert body.count("|:") >= 1 and (":|" in body or "::" in body)
    with pytest.raises(Exception, match="unknown key"):
        client.predict("3/4", "Hmaj", "song", "", 1, 1.0, "", api_name="/write_tunes")
    with pytest.raises(Exception, match="whole number"):
        client.predict("3/4", "G", "song", "", 1, 1.0, "abc", api_name="/write_tunes")


def test_building_an_app_leaves_the_model_folders_as_they_were(poem_model_dir, chat_model_dir,
                                                               tune_model_dir):
    """build_app's folders are its own handlers' (an app built for one test used to leave
    handlers.MODEL_DIRS pointing at its folders for every later one)."""
    before = dict(handlers.MODEL_DIRS)
    demo = build_app(poem_dir=poem_model_dir, tune_dir=tune_model_dir, chat_dir=chat_model_dir)
    assert handlers.MODEL_DIRS == before
    (info,) = [f for f in demo.fns.values() if f.api_name == "model_info"]
    cards = info.fn()                                   # the app's handler: the app's folders
    assert [cards[t]["rebuild"] for t in ("chat", "poem", "tune")] == ["tests/conftest.py"] * 3
    assert handlers.MODEL_DIRS == before


def test_model_info(client):
    cards = client.predict(api_name="/model_info")
    assert cards["poem"]["rebuild"] == "tests/conftest.py"
    assert cards["tune"]["task"] == "tune" and "files" in cards["tune"]
    assert cards["chat"]["rebuild"] == "tests/conftest.py"


@pytest.mark.parametrize("task,text", [("chat", "hi there\n{\"history\": []}\n"),
                                       ("poem", "明月\nhello\n"),
                                       ("tune", '{"meter": "6/8", "key": "D"}\nnot json\n')])
def test_batch_endpoint(client, tmp_path, task, text):
    f = tmp_path / "items.txt"
    f.write_text(text, encoding="utf-8")
    path, summary, shown = client.predict(handle_file(str(f)), task, "wujue", 1, 3,
                                          api_name="/run_batch")
    lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in lines] == [0, 1] and "error" in lines[1]
    assert summary == "2 items, 1 with errors"
    rows = shown.splitlines()[2:]                   # the preview: one row per item
    assert len(rows) == 2 and rows[1].startswith("| 1 |") and "⚠" in rows[1]
    assert "⚠" not in rows[0]
    if task == "tune":                              # the tune's notes, bar lines escaped
        assert "\\|" in rows[0] and "K:" not in rows[0]


def test_chat_streams_and_reply_takes_a_conversation(client):
    job = client.submit("how are you?", 0.8, "5", api_name="/chat")
    final = job.result()
    assert isinstance(final, str) and final and list(job.outputs())[-1] == final
    assert all(final.startswith(part) for part in job.outputs())
    assert final == client.predict(["how are you?"], 0.8, "5", api_name="/reply")
    turns = ["hi", "hello!", "how are you?"]
    a = client.predict(turns, 0.8, "5", api_name="/reply")
    assert isinstance(a, str) and a == client.predict(turns, 0.8, "5", api_name="/reply")
    with pytest.raises(Exception, match="message is empty"):
        client.predict("   ", 0.8, "", api_name="/chat")
    with pytest.raises(Exception, match="message is empty"):
        client.predict([], 0.8, "", api_name="/reply")


def test_message_text_from_content_blocks():
    assert _text([{"type": "text", "text": "hello"}, {"type": "text", "text": "there"}]) == \
        "hello there"
    assert _text("hi") == "hi" and _text(None) == ""


def test_download_files_are_bounded():
    """Every /write_tunes call left a folder behind (476 calls, 1.6 GB): now files older than
    SCRATCH_AGE go when the next one is made, and Gradio's cache copies on the same schedule."""
    import os
    first = files.scratch("tunes.abc")
    first.write_text("x")
    old = time.time() - files.SCRATCH_AGE - 5
    os.utime(first, (old, old))
    os.utime(first.parent, (old, old))
    busy = files.scratch("poems.jsonl")        # an old folder whose file is still written
    busy.write_text("x")
    os.utime(busy.parent, (old, old))
    second = files.scratch("tunes.abc")
    assert not first.parent.exists() and second.parent.exists() and busy.exists()
    assert second.parent.parent == first.parent.parent == files._scratch_root()
    assert build_app().delete_cache == (files.SCRATCH_AGE, files.SCRATCH_AGE)


def test_concurrency_option():
    """`python app.py --concurrency N` sets how many requests one endpoint runs at once;
    nonsense values are refused before anything starts."""
    import app
    assert build_app(concurrency=2)._queue.default_concurrency_limit == 2
    for bad in (["--concurrency", "0"], ["--threads", "-1"]):
        with pytest.raises(SystemExit) as e:
            app.main(bad)
        assert e.value.code == 2


def test_the_server_hands_freed_memory_back():
    import threading

    from server.memory import trim_memory_every
    trim_memory_every(3600)             # (not every few ms for the rest of the tests)
    assert any(t.name == "malloc-trim" and t.is_alive() for t in threading.enumerate())


def test_temp_folders_are_capped_by_size(tmp_path):
    """Gradio's cache was bounded only by age (10 minutes): now the oldest
    files go once the folders hold more than the cap, but never a fresh one."""
    import os
    roots = [tmp_path / "gradio", tmp_path / "scratch"]
    now = time.time()
    ages = {"gradio/a/1.wav": 500, "scratch/b/2.wav": 400, "gradio/c/3.wav": 300,
            "scratch/d/4.wav": 20, "gradio/e/5.wav": 10}        # seconds old, 100 bytes each
    for name, age in ages.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x" * 100)
        os.utime(f, (now - age, now - age))
    files.cap_folders(roots, 250, fresh=30)
    left = sorted(str(f.relative_to(tmp_path)) for r in roots for f in r.rglob("*.wav"))
    assert left == ["gradio/e/5.wav", "scratch/d/4.wav"]          # the three oldest went
    assert not (tmp_path / "gradio/a").exists() and all(r.is_dir() for r in roots)
    files.cap_folders(roots, 50, fresh=30)                          # over the cap, but fresh
    assert len(list(tmp_path.rglob("*.wav"))) == 2
    assert files.GRADIO_FOLDER is None or \
        os.environ["GRADIO_TEMP_DIR"] == str(files.GRADIO_FOLDER)


def test_batch_uploads_are_capped_and_must_be_uploads(client, tmp_path):
    """SECURITY.md: a server path is refused, and so are files over the line or size caps."""
    with pytest.raises(gr.Error, match="uploaded through the app"):
        batch.run_batch("/etc/passwd", "poem", "wujue", 1, 0)
    many = tmp_path / "many.txt"
    for sep in ("\n", "\r"):           # lines as the batch reader splits them, \r included
        many.write_text(("明月" + sep) * (batch.MAX_ITEMS + 1), encoding="utf-8")
        with pytest.raises(Exception, match="1000 at most"):
            client.predict(handle_file(str(many)), "poem", "wujue", 1, 0, api_name="/run_batch")
    big = tmp_path / "big.txt"
    big.write_text("明" * ((batch.MAX_UPLOAD_MB << 20) // 3 + 10), encoding="utf-8")
    with pytest.raises(Exception, match="maximum file size of 2097152 bytes"):  # Gradio's cap
        client.predict(handle_file(str(big)), "poem", "wujue", 1, 0, api_name="/run_batch")
    code = tmp_path / "code.txt"            # parsed as text, never run
    code.write_text("__import__('os').system('touch /tmp/shiyu-pwned')\n", encoding="utf-8")
    path, summary, _ = client.predict(handle_file(str(code)), "poem", "wujue", 1, 0,
                                      api_name="/run_batch")
    assert summary == "1 items, 1 with errors" and not Path("/tmp/shiyu-pwned").exists()


def test_models_tab_tables_and_curves():
    card = {"corpus": "c", "source": "a|b", "model": {"cell": "lstm", "hidden": 8}, "train":
            {"epochs": 2, "batch_size": 4}, "validation": {"ppl": 12.34}, "parameters": 99,
            "history": [{"epoch": 0, "val_ppl": 20.0}, {"epoch": 1, "val_ppl": 12.3}],
            "curve": [{"step": 50, "grad_norm": 2.5}, {"step": 100, "grad_norm": 0.9}]}
    table = models.models_table({"poem": card, "chat": {"error": "x is missing"}})
    assert table.startswith("| | **poem** | **chat** |")
    assert "| training | 2 epochs, ? steps of 4, ? min |" in table
    assert "| validation perplexity | 12.3 per token |  |" in table and "a/b" in table
    assert "| corpus | c | x is missing |" in table
    val, grad = models.curves({"poem": card, "tune": {"history": []}})
    assert val["perplexity"].tolist() == [20.0, 12.3] and val["epoch"].tolist() == [1, 2]
    assert grad["gradient norm"].tolist() == [2.5, 0.9] and set(grad["model"]) == {"poem"}


def test_building_the_app_writes_nothing_beside_the_source():
    # a gr.Component subclass makes Gradio write a .pyi stub next to its module
    build_app()
    root = Path(__file__).resolve().parents[1]
    assert not [*root.glob("*.pyi"), *(root / "server").glob("*.pyi")]


def test_model_info_lists_the_chinese_chat_bot(tmp_path, monkeypatch):
    for name in ("chat", "chat-zh"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text(json.dumps({"task": "chat", "source": name}))
    monkeypatch.setitem(handlers.MODEL_DIRS, "chat", tmp_path / "chat")
    cards = models.model_info()
    assert list(cards)[:2] == ["chat", "chat (Chinese)"]
    assert cards["chat (Chinese)"]["source"] == "chat-zh"
    assert "**chat (Chinese)**" in models.models_table(cards)
    (tmp_path / "chat-zh" / "card.json").unlink()
    assert "chat (Chinese)" not in models.model_info()


# -- what a person meets on the page ----------------------------------------------------------
@pytest.fixture
def toasts(monkeypatch):
    """The page's toasts: ("error" | "warning", message) in order."""
    import gradio.helpers
    said = []
    monkeypatch.setattr(gradio.helpers, "log_message",
                        lambda message, title, level="info", **kw: said.append((level, message)))
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **kw: said.append(("warning", message)))
    return said


def test_a_refusal_on_the_page_leaves_every_output_as_it_was(poem_model_dir, chat_model_dir,
                                                             monkeypatch, toasts):
    """The page's events show the message and skip every output (Gradio would put an error
    badge over each output of an event that raised); the endpoints still raise."""
    monkeypatch.setitem(handlers.MODEL_DIRS, "poem", poem_model_dir)
    monkeypatch.setitem(handlers.MODEL_DIRS, "chat", chat_model_dir)
    from server.chat import chat_turn
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert list(chat_turn("   ", history, 0.5, "")) == [(gr.skip(), gr.skip())]
    assert list(chat_turn("hi", history, 0.5, "abc")) == [(gr.skip(), gr.skip())]
    page = handlers.on_page(handlers.write_poems)
    assert list(page("明月", "wujue", 1, "", "", True, False, 0.8, "abc")) == [gr.skip()]
    assert handlers.on_page(handlers.write_tunes)("6/8", "Hmaj", "jig", "", 1, 1.0, "1") == \
        gr.skip()
    assert handlers.on_page(batch.run_batch)(None, "poem", "wujue", 1, 0) == gr.skip()
    assert [level for level, _ in toasts] == ["error"] * 5
    assert "message is empty" in toasts[0][1] and "seed" in toasts[1][1]
    assert "unknown key" in toasts[3][1] and "upload a file" in toasts[4][1]
    with pytest.raises(gr.Error, match="seed"):
        list(handlers.write_poems("明月", "wujue", 1, "", "", True, False, 0.8, "abc"))


def test_a_chat_turn_shows_your_message_then_the_reply_that_stays(chat_model_dir, monkeypatch,
                                                                   toasts):
    monkeypatch.setitem(handlers.MODEL_DIRS, "chat", chat_model_dir)
    from server.chat import chat_turn
    shown = list(chat_turn("how are you?", [], 0.8, "5"))
    assert shown[0] == ("", [{"role": "user", "content": "how are you?"}])
    replies = [h[-1]["content"] for _, h in shown[1:]]
    assert replies and replies[-1] == handlers.writer("chat").reply("how are you?", seed=5,
                                                                    temperature=0.8)
    assert all(replies[-1].startswith(r) for r in replies) and not toasts


def test_a_long_message_is_cut_and_the_page_says_so(chat_model_dir, monkeypatch, toasts):
    """The bot reads a message's last 1000 characters: the page says so (the box has no cap of
    its own, which would cut a paste without a word)."""
    monkeypatch.setitem(handlers.MODEL_DIRS, "chat", chat_model_dir)
    from server.chat import chat_turn
    shown = list(chat_turn("la " * 600, [], 0.8, "1"))
    assert shown[0][1][0]["content"] == "la " * 600          # the chat keeps what you wrote
    assert toasts == [("warning", "the message was cut to its last 1000 characters")]
    box = next(b for b in build_app().blocks.values() if isinstance(b, gr.Textbox)
               and b.placeholder == "Type a message and press Enter")
    assert box.max_length is None


@pytest.mark.parametrize("seed", range(6))
def test_what_streams_is_the_reply_that_stays(chat_rerank_dir, seed):
    """With the ranking's re-ranking (retrieved replies, the backward model), which only whole
    candidates can have, the stream still ends on the reply and never takes a part back."""
    from chatbot.bot import Bot
    bot = Bot.load(chat_rerank_dir)
    for message in ("what is your name?", "do you like music?"):
        parts = list(bot.stream(message, seed=seed))
        assert parts[-1] == bot.reply(message, seed=seed)
        assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(parts, parts[1:])), parts


def test_the_title_keeps_the_whole_theme(poem_model_dir, monkeypatch):
    """The writer reads a theme's first 10 characters (and says so); the title is the theme
    as given, never cut inside a word."""
    monkeypatch.setitem(handlers.MODEL_DIRS, "poem", poem_model_dir)
    theme = "明月思江送别春夏秋冬白日"              # 12 characters
    *_, (text, notes, _) = handlers.write_poems(theme, "wujue", 1, "", "", True, False, 0.8, "1")
    assert text.startswith(f"{theme} · 五绝\n") and "theme cut to its first 10" in notes


@pytest.fixture(scope="module")
def oblique_poem_dir(tmp_path_factory):
    """A tiny poem model whose characters are all oblique (仄): no line can rhyme."""
    from poetry.poems.format import SPECIALS
    from poetry.poems.train import default_model_config
    from shared.tokenizers import CharTokenizer
    from tests.helpers import export_tiny
    tok = CharTokenizer(list("月雪木柳水，。"), specials=SPECIALS)
    return export_tiny(tmp_path_factory.mktemp("oblique"), tok, default_model_config,
                       {"rebuild": "tests/test_app.py"})


def test_a_rule_that_gives_way_is_named_under_the_poem(oblique_poem_dir, poem_model_dir,
                                                       monkeypatch):
    monkeypatch.setitem(handlers.MODEL_DIRS, "poem", oblique_poem_dir)
    *_, (text, details, files) = handlers.write_poems("月", "wujue", 1, "", "", True, False,
                                                      0.8, "1")
    (row,) = [json.loads(x) for x in Path(files[1]).read_text(encoding="utf-8").splitlines()]
    assert ["rhyme", 2] in row["relaxed"] and ["rhyme", 4] in row["relaxed"]
    assert "⚠ the rhyme (押韵) gave way in lines 2, 4" in details
    assert "⚠" not in text
    # where every rule held, nothing is said
    monkeypatch.setitem(handlers.MODEL_DIRS, "poem", poem_model_dir)
    *_, (_, details, files) = handlers.write_poems("明月", "wujue", 1, "", "", False, False,
                                                   0.8, "1")
    assert "gave way" not in details and "relaxed" not in Path(files[1]).read_text("utf-8")


def test_the_rules_record_is_the_one_replayed_from_the_poem():
    """rules.relaxations reads a poem's record by replaying the rules over its text: the same
    record the rules kept while it was written."""
    import torch
    from poetry.poems.rules import LineIndex, make_spec, poem_rules, relaxations
    from shared.tokenizers import CharTokenizer
    tok = CharTokenizer(list("月雪木柳水天年山，。"))
    for spec in (make_spec("wujue", tones="strict"), make_spec("qijue", rhyme=False),
                 make_spec("wulv")):
        chain = poem_rules(tok, [spec], LineIndex(["月雪木柳水"]))
        g = torch.Generator().manual_seed(0)
        mask, out = chain.begin(torch.tensor([0])), []
        while not out or out[-1] != tok.eos_id:
            t = int((torch.rand(tok.vocab_size, generator=g) - 2.0 * ~mask[0]).argmax())
            out.append(t)
            mask = chain.step(torch.tensor([t]))
        poem = tok.decode(out)
        assert relaxations(tok, spec, poem, LineIndex(["月雪木柳水"])) == \
            chain.rules[1].record(0), poem


def test_the_examples_files_outlive_gradios_cache_sweep():
    """Gradio copies the examples' files into its cache as the page is built, and its sweep
    (delete_cache) removes files older than its age: the examples would point at nothing."""
    from gradio.route_utils import delete_files_created_by_app
    demo = build_app()
    bfile = next(b for b in demo.blocks.values()
                 if isinstance(b, gr.File) and b.label == "Input")
    held = sorted(bfile.temp_files, key=lambda p: Path(p).name)
    assert [Path(p).name for p in held] == ["messages.txt", "themes.txt", "tunes.jsonl"]
    delete_files_created_by_app(demo, age=-1)              # every file older than now
    assert all(Path(p).is_file() for p in held)
    root = Path(held[0]).parents[1]
    # capped to nothing, a folder loses every file it may: only ever the app's own
    assert files.GRADIO_FOLDER is not None and root == files.GRADIO_FOLDER, root
    files.cap_folders([root], 0, fresh=0, keep=files.PINNED)
    assert all(Path(p).is_file() for p in held)


def test_batch_files_that_hold_no_items_and_long_messages(client, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(Exception, match="the file is empty: give one item per line"):
        client.predict(handle_file(str(empty)), "poem", "wujue", 1, 0, api_name="/run_batch")
    long = tmp_path / "long.txt"
    theme = "the moon over the river " * 8
    long.write_text(f"{theme}\n\x01\x02\x03\n", encoding="utf-8")
    _, _, shown = client.predict(handle_file(str(long)), "poem", "wujue", 1, 0,
                                 api_name="/run_batch")
    rows = shown.splitlines()[2:]
    assert rows[0].endswith("has no Chinese characters; e.g. 明月, 秋思 |"), rows[0]  # whole
    assert rows[1].startswith("| 1 | \\x01\\x02\\x03 |"), rows[1]       # visible as escapes


def test_the_pages_controls():
    """The audio player has no share button (it posts to Hugging Face Spaces only), the ABC box
    no download (it would save file.txt; tunes.abc is in the downloads), Batch's Run is a
    primary button as every tab's is, and the training curve draws a point an epoch."""
    blocks = list(build_app().blocks.values())
    (audio,) = [b for b in blocks if isinstance(b, gr.Audio)]
    (code,) = [b for b in blocks if isinstance(b, gr.Code)]
    assert audio.buttons == ["download"] and code.buttons == ["copy"]
    runs = [b for b in blocks if isinstance(b, gr.Button) and b.visible is not False
            and b.value in ("Write 作诗", "Compose 作曲", "Run")]
    assert len(runs) == 3 and all(b.variant == "primary" for b in runs)
    (val,) = [b for b in blocks if isinstance(b, gr.components.NativePlot)
              and b.title == "Validation perplexity per epoch"]
    assert isinstance(val, gr.ScatterPlot)


def test_the_models_table_says_what_the_cards_say():
    one = {"train": {"epochs": 1, "batch_size": 64}, "steps": 1870, "train_wall_time_min": 8.1,
           "hardware": "2 cores; 1 torch thread(s)", "history": [{"epoch": 0, "val_ppl": 57.6}],
           "fine_tuned_from": {"run": "runs/x"}, "rebuild": "python -m shared.recipe run r.toml",
           "provenance": "trained by a longer chain (fine_tuned_from names the run); the recipe "
                         "rebuilds a model of the same design"}
    early = {"train": {"epochs": 30, "batch_size": 64}, "steps": 5562,
             "history": [{"epoch": e, "val_ppl": 9.0} for e in range(18)]}
    table = models.models_table({"chat": one, "zh": early})
    assert "| training | 1 epoch of fine-tuning, 1,870 steps of 64, 8.1 min; 2 cores; 1 torch " \
           "thread | 18 epochs (stopped early; 30 planned), 5,562 steps of 64, ? min |" in table
    assert "| rebuild | `python -m shared.recipe run r.toml` |  |" in table
    assert "| provenance | trained by a longer chain; the recipe rebuilds a model of the same " \
           "design |  |" in table
