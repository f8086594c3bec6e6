"""The OpenAI-compatible endpoint: completions, streaming, models, and errors in OpenAI's shape."""
import json

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Bot
from chatbot.openai_api import MAX_BODY, MODEL_ID, create_app, parse

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": [{"type": "text", "text": "what is your name?"}]}]


@pytest.fixture(scope="module")
def bot(chat_rerank_dir):
    return Bot.load(chat_rerank_dir)


@pytest.fixture(scope="module")
def client(bot):
    with TestClient(create_app(lambda: bot)) as c:
        yield c


def test_a_completion_is_the_bots_reply(client, bot):
    r = client.post("/v1/chat/completions", json={"model": MODEL_ID, "messages": MSGS,
                                                  "seed": 3, "n": 2, "temperature": 0.7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and len(body["choices"]) == 2
    expected = bot.replies(["hi", "hello!", "what is your name?"], n=2, temperature=0.7, seed=3)
    assert [c["message"]["content"] for c in body["choices"]] == [x["reply"] for x in expected]
    assert {c["shiyu"]["source"] for c in body["choices"]} <= {"generated", "retrieved"}
    assert body["usage"]["total_tokens"] == (body["usage"]["prompt_tokens"]
                                             + body["usage"]["completion_tokens"])


def test_streaming_sends_the_same_reply_as_chunks(client):
    plain = client.post("/v1/chat/completions", json={"messages": MSGS, "seed": 5}).json()
    with client.stream("POST", "/v1/chat/completions",
                       json={"messages": MSGS, "seed": 5, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [x[len("data: "):] for x in r.iter_lines() if x.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_cuts_the_reply(client, bot):
    full = client.post("/v1/chat/completions", json={"messages": MSGS, "seed": 5}).json()
    pieces = bot.tok.encode(full["choices"][0]["message"]["content"])
    assert len(pieces) > 1                    # the tiny model's replies are long
    cut = client.post("/v1/chat/completions",
                      json={"messages": MSGS, "seed": 5, "max_tokens": 1}).json()["choices"][0]
    assert cut["finish_reason"] == "length"
    assert cut["message"]["content"] == bot.tok.decode(pieces[:1]).strip()


def test_models_lists_the_bot(client):
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [MODEL_ID]


@pytest.mark.parametrize("body, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": MSGS, "temperature": 5.0}, "temperature"),
    ({"messages": MSGS, "temperature": float("nan")}, "temperature"),
    ({"messages": MSGS, "temperature": "hot"}, "temperature"),
    ({"messages": MSGS, "temperature": 10 ** 400}, "temperature"),
    ({"messages": MSGS, "top_p": 0}, "top_p"),
    ({"messages": MSGS, "n": 0}, "n"), ({"messages": MSGS, "n": 99}, "n"),
    ({"messages": MSGS, "n": 2, "stream": True}, "n"),
    ({"messages": MSGS, "seed": "7"}, "seed"), ({"messages": MSGS, "seed": True}, "seed"),
    ({"messages": MSGS, "max_tokens": 0}, "max_tokens"),
    ({"messages": MSGS, "stream": "yes"}, "stream"),
])
def test_bad_requests_are_400s_in_openai_shape(client, body, param):
    r = client.post("/v1/chat/completions",
                    content=json.dumps(body, allow_nan=True).encode("utf-8"),
                    headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]
    assert client.get("/v1/models").status_code == 200          # still up


def test_unknown_model_bad_json_and_huge_bodies(client):
    r = client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": MSGS})
    assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]
    for raw in (b"{not json", b"\xff\xfe", b"[" * 100_000, b"[1, 2]",
                b'{"messages": [], "seed": ' + b"9" * 5000 + b"}"):
        r = client.post("/v1/chat/completions", content=raw,
                        headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", content=b" " * (2 << 20),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_parse_defaults():
    req = parse({"messages": [{"role": "user", "content": "hi"}]})
    assert req == {"turns": ["hi"], "stream": False, "n": 1, "temperature": Bot.TEMPERATURE,
                   "top_p": Bot.TOP_P, "seed": None, "max_tokens": None}


def test_the_server_mounts_the_app_beside_the_api(chat_rerank_dir, poem_model_dir):
    import app
    with TestClient(app.server(chat_dir=chat_rerank_dir, poem_dir=poem_model_dir)) as c:
        assert c.get("/v1/models").status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "Shiyu" in page.text
        r = c.post("/v1/chat/completions", json={"messages": MSGS, "seed": 1})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_the_openai_client_library_talks_to_it(client, bot):
    """The `openai` package itself (a test-only dependency), over the test client's transport."""
    openai = pytest.importorskip("openai")
    c = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    out = c.chat.completions.create(model=MODEL_ID, messages=MSGS, seed=2)
    assert out.choices[0].message.content == bot.reply(["hi", "hello!", "what is your name?"],
                                                       seed=2)
    parts = [ch.choices[0].delta.content or "" for ch in
             c.chat.completions.create(model=MODEL_ID, messages=MSGS, seed=2, stream=True)]
    assert "".join(parts) == out.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="temperature"):
        c.chat.completions.create(model=MODEL_ID, messages=MSGS, temperature=1.9)
    assert [m.id for m in c.models.list()] == [MODEL_ID]


# -- the real server (`python app.py --port 0`, tiny models), over HTTP --------------------------
@pytest.fixture(scope="module")
def served(chat_rerank_dir, poem_model_dir, tune_model_dir, tmp_path_factory):
    """The address of the real server, "http://127.0.0.1:PORT"; its log holds no traceback."""
    from tests.test_promises import start_app, wait_for
    log = tmp_path_factory.mktemp("served") / "server.log"
    proc, host, port = start_app({"chat": chat_rerank_dir, "poem": poem_model_dir,
                                  "tune": tune_model_dir}, log)
    try:
        wait_for(host, port)
        yield f"http://{host}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and '" 500 ' not in text, text[-3000:]


def openai_error(r, status: int, param=None) -> dict:
    """The error of response `r` in the shape OpenAI's clients read, its message returned."""
    assert r.status_code == status and r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert list(body) == ["error"] and set(body["error"]) == {"message", "type", "param", "code"}
    err = body["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and \
        err["code"] is None and isinstance(err["message"], str) and err["message"], body
    return err["message"]


def chunked_post(url: str, path: str, chunks) -> tuple[int, dict, bytes]:
    """POST `chunks` with Transfer-Encoding: chunked and no Content-Length (http.client):
    (status, headers, body). The server may answer before the body ends."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.putrequest("POST", path)
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    try:
        for chunk in chunks:
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):      # refused mid-body: read the answer
        pass
    r = c.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    c.close()
    return out


@pytest.mark.slow
def test_the_servers_404s_and_413s_are_in_openais_shape(served):
    import httpx
    msgs = [{"role": "user", "content": "hi"}]
    r = httpx.post(f"{served}/v1/chat/completions", json={"model": "gpt-4", "messages": msgs})
    assert "does not exist" in openai_error(r, 404, "model")
    for method, path in (("POST", "/v1/completions"), ("GET", "/v1/models/gpt-4"),
                         ("GET", "/v1/chat/completions"), ("POST", "/v1/embeddings")):
        r = httpx.request(method, f"{served}{path}", json={"messages": msgs})
        assert openai_error(r, 404) == f"Invalid URL ({method} {path})"
    r = httpx.post(f"{served}/v1/chat/completions", content=b" " * (MAX_BODY + 1),
                   headers={"content-type": "application/json"})
    assert "over 1048576 bytes" in openai_error(r, 413)
    # chunked: no Content-Length to refuse it by; 11 chunks of 100 kB, 1.1 MB in all
    status, headers, raw = chunked_post(served, "/v1/chat/completions",
                                        [b" " * 100_000] * 11)
    assert "content-length" in headers        # the answer has one; the request had none
    assert status == 413 and json.loads(raw)["error"]["message"] == \
        f"the request body is over {MAX_BODY} bytes"
    assert openai_error(httpx.Response(status, headers=headers, content=raw), 413)
    # a chunked body under the cap is read whole and answered
    body = json.dumps({"messages": msgs, "seed": 1}).encode()
    status, _, raw = chunked_post(served, "/v1/chat/completions", [body[:10], body[10:]])
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_the_openai_library_reads_the_servers_errors(served):
    openai = pytest.importorskip("openai")
    c = openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model=MODEL_ID, prompt="hi")
    assert e.value.type == "invalid_request_error"
    assert e.value.body["message"] == "Invalid URL (POST /v1/completions)"
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert e.value.param == "model" and "does not exist" in e.value.body["message"]


@pytest.mark.slow
def test_each_choice_carries_the_score_the_bots_ranking_gave(served, bot):
    """`shiyu.score` (and `shiyu.source`) of each choice are those of the bot's own ranking,
    best first: the same request to the bot in this process gives the same replies, sources and
    scores."""
    import httpx
    r = httpx.post(f"{served}/v1/chat/completions", timeout=120,
                   json={"messages": MSGS, "n": 4, "seed": 4, "temperature": 0.9})
    choices = r.json()["choices"]
    ranked = bot.replies(["hi", "hello!", "what is your name?"], n=4, seed=4, temperature=0.9)
    assert len(choices) == len(ranked) > 1
    assert [c["message"]["content"] for c in choices] == [x["reply"] for x in ranked]
    assert [c["shiyu"] for c in choices] == [{"source": x["source"], "score": x["score"]}
                                             for x in ranked]
    scores = [c["shiyu"]["score"] for c in choices]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 6])
def test_a_chinese_reply_streams_as_the_same_chinese_text(served, bot, seed):
    """stream=true with a Chinese message: character deltas, sent as UTF-8 (not \\u escapes),
    that join to the reply the same request gives unstreamed with the same seed, which is the
    bot's and Chinese."""
    import httpx

    from chatbot.bot import is_chinese
    body = {"messages": [{"role": "user", "content": "你好"}], "seed": seed}
    plain = httpx.post(f"{served}/v1/chat/completions", json=body, timeout=120).json()
    text = plain["choices"][0]["message"]["content"]
    assert text == bot.reply("你好", seed=seed) and is_chinese(text), text
    with httpx.stream("POST", f"{served}/v1/chat/completions", json={**body, "stream": True},
                      timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode("utf-8")
    events = [x[len("data: "):] for x in raw.split("\n\n") if x.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parts = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    parts = [p for p in parts if p]
    assert "".join(parts) == text and len(parts) == len(text) > 1      # a delta a character
    assert all(p in raw for p in parts if not p.isascii())               # as UTF-8 on the wire
