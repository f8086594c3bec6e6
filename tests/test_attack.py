"""The app as an attacker meets it: the real server (`python app.py --port 0`, tiny models) on
loopback, called over HTTP as any client can. Every refusal is one clear line, the server
answers the next request, nothing outside the app's own files can be read, and the server's
log holds no traceback and no HTTP 500.

SHIYU_FUZZ_SECONDS=600 makes the Hypothesis search over every endpoint's parameters run for
that long (the suite runs a short one)."""
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
FILE = {"_type": "gradio.FileData"}
pytestmark = pytest.mark.slow


class Server:
    def __init__(self, proc, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log
        self.port = int(url.rsplit(":", 1)[1].strip("/"))

    def call(self, api: str, data, timeout: float = 60) -> tuple[str, object]:
        """("complete", outputs), ("error", message) or ("http <status>", body)."""
        r = httpx.post(f"{self.url}gradio_api/call/{api}", timeout=timeout,  # JSON escapes:
                       content=json.dumps({"data": data}),                  # "\\ud800" travels
                       headers={"content-type": "application/json"})
        if r.status_code != 200:
            return f"http {r.status_code}", r.text
        event_id = r.json()["event_id"]
        with httpx.stream("GET", f"{self.url}gradio_api/call/{api}/{event_id}",
                          timeout=timeout) as s:
            text = "".join(s.iter_text())
        kind = re.findall(r"^event: (\w+)", text, re.M)[-1]
        data = json.loads(re.findall(r"^data: (.*)$", text, re.M)[-1])
        return ("error", data["error"] if data else None) if kind == "error" else (kind, data)

    def upload(self, name: str, content: bytes) -> dict:
        r = httpx.post(f"{self.url}gradio_api/upload", files={"files": (name, content)},
                       timeout=30)
        assert r.status_code == 200, r.text
        return {"path": r.json()[0], "meta": FILE}

    def fetch(self, file: dict) -> bytes:
        return httpx.get(file["url"], timeout=30).content

    def alive(self) -> bool:
        return httpx.get(f"{self.url}v1/models", timeout=10).status_code == 200

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def server(chat_rerank_dir, poem_model_dir, tune_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", "0", "--threads", "1",
             "--chat-model", str(chat_rerank_dir), "--poem-model", str(poem_model_dir),
             "--tune-model", str(tune_model_dir)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    url = None
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"Shiyu is at (http://\S+/)", log.read_text(errors="replace"))
        url = m and m.group(1)
        time.sleep(0.2)
    assert url, log.read_text(errors="replace")[-3000:]
    s = Server(proc, url, log)
    while not s.alive():
        time.sleep(0.2)
    yield s
    proc.terminate()
    proc.wait(timeout=30)
    text = s.log_text()
    assert "Traceback" not in text and '" 500 ' not in text, text[-5000:]


def refused(outcome, *words) -> bool:
    kind, message = outcome
    return kind == "error" and isinstance(message, str) and "\n" not in message and \
        all(w in message for w in words)


def test_the_server_listens_on_loopback_only(server):
    assert server.url.startswith("http://127.0.0.1:")
    with pytest.raises(OSError):                 # another loopback address: nobody there
        socket.create_connection(("127.0.0.2", server.port), timeout=5).close()
    socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


SERVER_PATHS = ["/etc/passwd", "../../etc/passwd", "/proc/self/environ", "/dev/zero",
                "/dev/urandom", "/tmp", "/", "\x00", "", str(ROOT / "app.py"),
                "data/examples/themes.txt", "file:///etc/passwd", "http://127.0.0.1:{port}/config",
                "https://example.com/x.txt", "//127.0.0.1/x"]


@pytest.mark.parametrize("path", SERVER_PATHS)
def test_no_file_a_client_names_is_read(server, path):
    """The batch file: only an upload; a server path, a device, a folder or a URL is refused
    before it is read (/dev/zero once hung the whole server), and the server goes on."""
    ref = {"path": path.format(port=server.port), "meta": FILE}
    t0 = time.monotonic()
    got = server.call("run_batch", [ref, "poem", "qijue", 1, 0], timeout=30)
    assert refused(got, "uploaded through the app"), got
    assert time.monotonic() - t0 < 20 and server.alive()


def test_a_plain_path_or_a_file_inside_any_value_is_refused(server):
    assert refused(server.call("run_batch", ["/etc/passwd", "poem", "qijue", 1, 0]),
                   "uploaded through the app")
    ref = {"path": "/etc/passwd", "meta": FILE}
    assert refused(server.call("reply", [[ref], 0.5, "1"]), "uploaded through the app")
    assert refused(server.call("write_poems", [ref, "qijue", 1, "", "", True, False, 0.7, "1",
                                               ""]), "uploaded through the app")


def test_an_upload_runs_and_each_bad_line_fails_alone(server):
    lines = ["明月", '{"theme": "\\ud800明月"}', '{"theme": "明月", "seed": 1' + "0" * 5000 + "}",
             "春\u2028秋\x85夜", '{"theme": "秋夜"}', "\x0c"]
    ref = server.upload("themes.txt", "\n".join(lines).encode("utf-8"))
    kind, (result, summary, preview) = server.call("run_batch", [ref, "poem", "wujue", 1, 0])
    assert kind == "complete" and summary == "6 items, 3 with errors", summary
    rows = [json.loads(x) for x in server.fetch(result).decode("utf-8").split("\n") if x]
    assert [r["index"] for r in rows] == list(range(6))
    assert ["error" in r for r in rows] == [False, True, True, False, False, True]
    assert "invalid character" in rows[1]["error"] and "invalid JSON" in rows[2]["error"]
    assert rows[1]["input"] == lines[1] and rows[3]["input"] == {"theme": lines[3]}
    assert "_error" not in preview and preview.count("\n| ") == 1 + 5    # a rule, 5 rows


SURROGATE = "\ud800"
BAD_CALLS = [
    ("chat", [f"hi {SURROGATE}", 0.5, "1"], "invalid character"),
    ("reply", [["hi", f"{SURROGATE}x", "and you?"], 0.5, "1"], "invalid character"),
    ("write_poems", [f"{SURROGATE}明月", "qijue", 1, "", "", True, False, 0.7, "1", ""],
     "invalid character"),
    ("write_poems", ["明月", "qijue", 1, "", "", True, False, 0.7, "1", f"明{SURROGATE}"],
     "invalid character"),
    ("write_tunes", ["6/8", "Dmaj", "jig", SURROGATE, 1, 1.0, "1", "", 120], "invalid character"),
    ("write_tunes", ["6/8", f"D{SURROGATE}", "jig", "", 1, 1.0, "1", "", 120],
     "invalid character"),
    ("reply", [5, 0.5, "1"], "a conversation is a list"),
    ("reply", [True, 0.5, "1"], "a conversation is a list"),
    ("reply", [1.5, 0.5, "1"], "a conversation is a list"),
    ("reply", [{"a": 1}, 0.5, "1"], "'messages'"),
    ("reply", [["hi"], 10**400, "1"], "temperature"),
    ("reply", [["hi"], 0.5, str(10**400)], "seed"),
    ("reply", [["hi"]], "takes 3 values (conversation, temperature, seed), got 1"),
    ("reply", [], "takes 3 values"),
    ("chat", ["hi", 0.5, "1", "extra"], "takes 3 values"),
    ("write_poems", ["明月", "qijue", 1, "", "", True, False, 10**400, "1", ""], "Temperature"),
    ("write_poems", ["明月", "qijue", 1.5, "", "", True, False, 0.7, "1", ""],
     "poems must be a whole number"),
    ("write_tunes", ["6/8", "Dmaj", "jig", "", 1, float("nan"), "1", "", 120], "Temperature"),
    ("run_batch", [None, "poem", "qijue", 1, 1.5], "Seed: must be a whole number"),
    ("run_batch", [None, "poem", "qijue", 1, True], "Seed: must be a whole number"),
    ("run_batch", [None, "poem", "qijue", 1, 0], "upload a file"),
]


@pytest.mark.parametrize("api,data,words", BAD_CALLS, ids=lambda x: str(x)[:30])
def test_bad_values_are_one_line_each(server, api, data, words):
    if any(x != x for x in data if isinstance(x, float)):    # NaN: not JSON, as JS sends it
        data = [None if isinstance(x, float) and x != x else x for x in data]
    assert refused(server.call(api, data), words)
    assert server.alive()


def test_a_string_conversation_is_one_message(server):
    kind, out = server.call("reply", ["hello", 0.5, "1"])
    assert kind == "complete" and out == server.call("reply", [["hello"], 0.5, "1"])[1]


def test_an_unknown_endpoint_is_404(server):
    kind, body = server.call("nosuch", [1])
    assert kind == "http 404" and "no such endpoint" in body


def openai(server, body: bytes, headers=None):
    return httpx.post(f"{server.url}v1/chat/completions", content=body, timeout=60,
                      headers={"content-type": "application/json", **(headers or {})})


def test_the_openai_route_refuses_with_400_413_and_404(server):
    r = openai(server, b'{"messages": [{"role": "user", "content": "\\ud800"}]}')
    assert r.status_code == 400 and "invalid character" in r.json()["error"]["message"]
    r = openai(server, b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1'
               + b"0" * 400 + b"}")
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    r = openai(server, b'{"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}')
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"

    def chunks():                              # chunked: no content-length to refuse early
        for _ in range(20):
            yield b" " * 100_000
    r = httpx.post(f"{server.url}v1/chat/completions", content=chunks(), timeout=60)
    assert r.status_code == 413 and "over" in r.json()["error"]["message"]


def test_a_client_that_leaves_mid_body_costs_one_log_line(server):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"mess")
        s.close()
    deadline = time.monotonic() + 20        # each disconnect is noticed in its own time
    while server.log_text().count("went away while sending") < 3 and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)                          # and no more lines than clients follow
    assert server.log_text().count("went away while sending") == 3 and server.alive()


# -- a search over every endpoint's parameters ------------------------------------------------
def _json_values():
    text = st.text(max_size=30) | st.sampled_from(["明月", "hi", SURROGATE, f"明{SURROGATE}月",
                                                    "6/8", "Dmaj", "jig", "qijue", "", " "])
    file = st.builds(lambda p: {"path": p, "meta": FILE},
                     st.sampled_from(["/etc/passwd", "/dev/zero", "/tmp", "x", "http://a/b"])
                     | st.text(max_size=20))
    leaf = (st.none() | st.booleans() | st.integers() | st.sampled_from([10**400, -1, 2**31])
            | st.floats(allow_nan=False, allow_infinity=False) | text | file)
    return st.recursive(leaf, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(text, kids, max_size=3), max_leaves=8)


ENDPOINTS = {"chat": 3, "reply": 3, "write_poems": 10, "write_tunes": 9, "run_batch": 5,
             "model_info": 0}


def _fuzz(server, examples: int):
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(api=st.sampled_from(sorted(ENDPOINTS)), data=st.data())
    def one(api, data):
        k = ENDPOINTS[api]
        arity = data.draw(st.sampled_from([k, k, k, max(k - 1, 0), k + 1]))
        values = data.draw(st.lists(_json_values(), min_size=arity, max_size=arity))
        kind, out = server.call(api, values, timeout=120)
        assert kind in ("complete", "error"), (api, values, kind, out)
        if kind == "error":
            assert isinstance(out, str) and "\n" not in out and "Traceback" not in out, out

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=st.dictionaries(st.sampled_from(["messages", "model", "temperature", "top_p",
                                                 "n", "seed", "max_tokens", "stream", "x"]),
                                _json_values(), max_size=5)
           | st.builds(lambda m, extra: {"messages": m, **extra},
                       st.lists(st.fixed_dictionaries({"role": st.sampled_from(
                           ["user", "assistant", "system", "x"]), "content": _json_values()}),
                           min_size=1, max_size=3),
                       st.dictionaries(st.sampled_from(["temperature", "n", "stream", "seed"]),
                                       _json_values(), max_size=2)))
    def openai_body(body):
        raw = json.dumps(body).encode("utf-8")          # \ud800 travels as a JSON escape
        r = openai(server, raw)
        assert r.status_code in (200, 400, 404, 413), (body, r.status_code, r.text[:300])
    one()
    openai_body()


def test_a_search_over_every_endpoint_finds_no_traceback(server):
    seconds = float(os.environ.get("SHIYU_FUZZ_SECONDS", 0))
    deadline = time.monotonic() + seconds
    rounds = 0
    while True:
        _fuzz(server, 25)
        rounds += 1
        if time.monotonic() >= deadline:
            break
    assert server.alive()
    text = server.log_text()
    assert "Traceback" not in text and '" 500 ' not in text, text[-5000:]
    print(f"{rounds} rounds of 25 + 25 examples")
