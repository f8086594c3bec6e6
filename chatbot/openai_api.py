"""An OpenAI-compatible chat endpoint for the bot, so any OpenAI client library can talk to it.

    POST /v1/chat/completions   {"messages": [{"role": "user", "content": "hi!"}], ...}
    GET  /v1/models

`app.py` serves these routes beside the Gradio app in one server (Gradio mounts on FastAPI).
Accepted: `messages` (user/assistant/system; the last one the user's; content a string or a
list of text parts), `model` (absent or "shiyu-chat"), `temperature` (0.3-1.5, the Chat tab's
range; default 0.5, the bot's), `top_p` (0-1], `seed` (a whole number), `n` (1-10), `max_tokens` (pieces
of the reply kept; finish_reason "length" when it cut), `stream`. Anything else in the body is
ignored, as OpenAI-compatible servers do. A bad value is a 400 with OpenAI's error shape,
`{"error": {"message", "type": "invalid_request_error", "param", "code"}}`; so are a body over
1 MB (413, chunked or not), another model (404) and any other /v1 path or method (404,
"Invalid URL (POST /v1/completions)", as OpenAI answers). Each choice carries
`"shiyu": {"source", "score"}`: where the reply came from ("generated" or "retrieved") and its
score in the bot's ranking (chatbot/bot.py), best first.

With `stream: true` the reply comes as server-sent events, `chat.completion.chunk` deltas and
`data: [DONE]`. The bot re-ranks whole candidates (chatbot/bot.py), so the chunks are the
chosen reply's words, sent once it is chosen; their concatenation equals the non-streamed
reply for the same seed.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
import warnings
from typing import Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from shared.cli import is_number, shown

from .bot import MAX_N, Bot, from_messages, is_chinese

MODEL_ID = "shiyu-chat"
TEMPERATURE = (0.3, 1.5)          # the range the Chat tab's slider allows (server/handlers.py LIMITS)
MAX_BODY = 1 << 20                # bytes of one request body

log = logging.getLogger("shiyu.openai")


class RequestError(ValueError):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


def _number(body: dict, name: str, default: float, lo: float, hi: float,
            low_open: bool = False) -> float:
    x = body.get(name, default)
    if x is None:
        return default
    if not is_number(x) or x > hi or x < lo or (low_open and x == lo):
        span = f"({lo}, {hi}]" if low_open else f"[{lo}, {hi}]"
        raise RequestError(f"{name} must be a number in {span}, got {shown(x)}", name)
    return float(x)


def _whole(body: dict, name: str, default, lo: int, hi: int | None = None):
    x = body.get(name, default)
    if x is None:
        return default
    if not isinstance(x, int) or isinstance(x, bool) or x < lo or (hi is not None and x > hi):
        span = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise RequestError(f"{name} must be a whole number {span}, got {shown(x)}", name)
    return x


def _content(message) -> object:
    """OpenAI content may be a list of parts: their text, joined."""
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        parts = message["content"]
        if not all(isinstance(p, dict) and p.get("type") == "text" and
                   isinstance(p.get("text"), str) for p in parts):
            raise RequestError("only text content parts are supported", "messages")
        return {**message, "content": " ".join(p["text"] for p in parts)}
    return message


def parse(body) -> dict:
    """The validated request: turns and the bot's options. RequestError says what is wrong."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model", MODEL_ID)
    if model not in (None, MODEL_ID):
        raise RequestError(f"the model {shown(model)} does not exist; use {MODEL_ID!r}", "model",
                           404)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RequestError("messages must be a list of {role, content} objects", "messages")
    try:
        turns = from_messages([_content(m) for m in messages])
    except RequestError:
        raise
    except ValueError as e:
        raise RequestError(str(e), "messages") from None
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"stream must be true or false, got {stream!r}", "stream")
    n = _whole(body, "n", 1, 1, MAX_N)
    if stream and n > 1:
        raise RequestError("stream supports n = 1 only", "n")
    return {"turns": turns, "stream": stream, "n": n,
            "temperature": _number(body, "temperature", Bot.TEMPERATURE, *TEMPERATURE),
            "top_p": _number(body, "top_p", Bot.TOP_P, 0.0, 1.0, low_open=True),
            "seed": _whole(body, "seed", None, 0),
            "max_tokens": _whole(body, "max_tokens", None, 1)}


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse({"error": {"message": str(e), "type": "invalid_request_error",
                                   "param": e.param, "code": None}}, status_code=e.status)


def create_app(bot: Callable[[], Bot]) -> FastAPI:
    """The /v1 routes over `bot()` (called per request: the app's cached bot)."""
    api = FastAPI(title="Shiyu OpenAI-compatible chat", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @api.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0,
                                            "owned_by": "shiyu"}]}

    @api.post("/v1/chat/completions")
    async def completions(request: Request):
        too_big = RequestError(f"the request body is over {MAX_BODY} bytes", None, 413)
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _error(too_big)
        raw = b""
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_BODY:
                    return _error(too_big)
        except ClientDisconnect:                 # nobody is left to answer: one log line
            log.warning("a client went away while sending its request")
            return Response(status_code=400)
        try:
            req = parse(json.loads(raw.decode("utf-8")))
        except RequestError as e:
            return _error(e)
        except (ValueError, RecursionError):     # not UTF-8, not JSON, an int too long
            return _error(RequestError("the request body is not valid JSON"))

        def reply():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")      # a long message is cut: the reply says so
                return bot().replies(req["turns"], n=req["n"], temperature=req["temperature"],
                                     top_p=req["top_p"], seed=req["seed"])
        try:                                     # decoding off the event loop, which also
            out = await run_in_threadpool(reply)  # serves the Gradio app
        except ValueError as e:
            return _error(RequestError(str(e), "messages"))
        if not out:
            return _error(RequestError("no reply could be written for these messages",
                                       "messages"))
        tok = bot().tok
        choices = []
        for i, r in enumerate(out):
            text, finish = r["reply"], "stop"
            pieces = tok.encode(text)
            if req["max_tokens"] is not None and len(pieces) > req["max_tokens"]:
                text, finish = tok.decode(pieces[:req["max_tokens"]]).strip(), "length"
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish,
                            "shiyu": {k: r[k] for k in ("source", "score") if k in r}})
        prompt = sum(len(tok.encode(t)) for t in req["turns"])
        completion = sum(len(tok.encode(c["message"]["content"])) for c in choices)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
                "model": MODEL_ID}
        if not req["stream"]:
            return {**head, "object": "chat.completion", "choices": choices,
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}}
        return StreamingResponse(_chunks(head, choices[0]), media_type="text/event-stream")

    # any other /v1 path or method: a 404 in OpenAI's shape (before the Gradio app that
    # app.py mounts at / would answer {"detail": "Not Found"})
    @api.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    def unknown(request: Request):
        return _error(RequestError(f"Invalid URL ({request.method} {request.url.path})", None,
                                   404))

    return api


def _chunks(head: dict, choice: dict):
    def event(delta: dict, finish=None) -> str:
        chunk = {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    text = choice["message"]["content"]
    for part in (list(text) if is_chinese(text) else re.findall(r"\s*\S+", text)):
        yield event({"content": part})
    yield event({}, choice["finish_reason"])
    yield "data: [DONE]\n\n"
