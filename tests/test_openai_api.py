"""The OpenAI-compatible endpoint: completions, streaming, models, and errors in OpenAI's shape."""
import json

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Bot
from chatbot.openai_api import MODEL_ID, create_app, parse

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
