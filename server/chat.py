"""The Chat tab's handlers and the chat endpoints: /chat (one message in, the reply streamed
out), /reply (a whole conversation in, the next turn out) and the page's own turn, which keeps
the conversation on the page.

A reply streams once the bot has chosen it (shared/writer.py `stream_job`): what streams in is
the reply that stays. What the bot changes in a message, such as a long one cut to its end,
it says (a toast on the page).
"""
from __future__ import annotations

from typing import Iterator

import gradio as gr

from chatbot.bot import Bot, clean_history
from server.handlers import _number, _refuse, _seed, _user_error, notes, tell, writer


def _text(content) -> str:
    """A chat message's text: a plain string, or Gradio 6's list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        return " ".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return "" if content is None else str(content)


def _request(turns: list[str], temperature, seed) -> tuple[list[str], Iterator[str]]:
    """The request checked before anything is decoded (one clear error): the bot's notes on
    it (e.g. "the message was cut to its last 1000 characters") and the reply's parts."""
    temperature, seed = _number(temperature, "chat temperature"), _seed(seed)
    try:
        bot = writer("chat")
        with notes() as said:
            clean_history(turns)                  # the bot's own check of a conversation
    except (ValueError, FileNotFoundError) as e:
        raise _user_error(e) from None
    return said, bot.stream(turns, temperature=temperature, seed=seed)


def _parts(parts: Iterator[str]) -> Iterator[str]:
    """The reply's growing text; a conversation the bot can write nothing for is refused."""
    got = False
    while True:
        try:
            with notes():                         # said once already, by `_request`
                part = next(parts)
        except StopIteration:
            break
        except (ValueError, FileNotFoundError) as e:
            raise _user_error(e) from None
        got = True
        yield part
    if not got:
        raise _refuse("no reply could be written for this conversation; say it another way")


def chat(message, temperature, seed, history=None):
    """Streams the reply as it grows; the bot sees the conversation's recent turns
    (`history`: the chat so far, as messages). Bad input fails before the first part."""
    turns = [_text(m.get("content")) for m in history or [] if isinstance(m, dict)]
    said, parts = _request(turns + [_text(message)], temperature, seed)
    for note in said:
        gr.Warning(note)
    yield from _parts(parts)


def chat_turn(message, history, temperature, seed):
    """The Chat tab: your message joins the chat at once and the reply streams in under it.
    A refused message changes nothing: the chat stays as it was, the box keeps your text, and
    the message says why."""
    history = list(history or [])
    turns = [_text(m.get("content")) for m in history if isinstance(m, dict)]
    try:
        said, parts = _request(turns + [_text(message)], temperature, seed)
    except gr.Error as e:
        tell(e)
        yield gr.skip(), gr.skip()
        return
    for note in said:
        gr.Warning(note)
    mine = history + [{"role": "user", "content": _text(message)}]
    yield "", mine                 # the box cleared once: what you type meanwhile stays
    try:
        for part in _parts(parts):
            yield gr.skip(), mine + [{"role": "assistant", "content": part}]
    except gr.Error as e:
        tell(e)
        yield message, history     # as it was before the message was sent


def reply(conversation: list[str], temperature: float = Bot.TEMPERATURE,
          seed: str = "") -> str:
    """The bot's next turn after `conversation` (the turns so far, the last one yours):
    for scripts that keep the conversation themselves."""
    try:
        return writer("chat").reply(conversation,
                                    temperature=_number(temperature, "chat temperature"),
                                    seed=_seed(seed))
    except (ValueError, FileNotFoundError) as e:
        raise _user_error(e) from None
