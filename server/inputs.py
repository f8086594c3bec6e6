"""What a request to the app may hold, checked before Gradio handles it (`guard`).

Files: only files that this server made or that were uploaded to it.

A client can put a file reference (Gradio's FileData: {"path": ..., "meta": {"_type":
"gradio.FileData"}}) into any input of any event, the batch file above all. Gradio copies
each named path into its cache before the handler runs; its own check of that path is only
active in `Blocks.launch()`, not in an app served through `gr.mount_gradio_app`, as this one
is. So every request's inputs are checked here first (`guard`), whatever the endpoint:

* the path must be text, without NUL, not a URL (the server fetches nothing a client names);
* it must resolve (symbolic links followed) to a file that Gradio's upload route wrote in this
  process (`Blocks.upload_file_set`) or that the app itself made and handed out (the files of
  examples and results, which Gradio keeps in each component's `temp_files`);
* and it must be a regular file: never a device, a pipe or a folder.

Anything else is refused with one message before a byte of it is read. And a request with
too few or too many values, or a value Gradio's own preprocessing refuses, gets one line
naming the problem, never Gradio's multi-line message and traceback.
"""
from __future__ import annotations

import inspect
import os
import stat
from typing import Any, Callable

import gradio as gr
from gradio.data_classes import FileData, ListFiles

FILE_TYPE = "gradio.FileData"
FILE_MODELS = (FileData, ListFiles)         # the data models of Gradio's file inputs
MAX_PATH = 4096


def is_file_reference(x: Any) -> bool:
    """A FileData object as a client sends it (its "meta" says so), whatever its path holds."""
    return isinstance(x, dict) and isinstance(x.get("meta"), dict) and \
        x["meta"].get("_type") == FILE_TYPE


def references(value: Any) -> list[dict]:
    """Every file reference inside a request's input value (nested lists and dicts)."""
    found, stack = [], [value]
    while stack:
        x = stack.pop()
        if is_file_reference(x):
            found.append(x)
        elif isinstance(x, dict):
            stack += list(x.values())
        elif isinstance(x, (list, tuple)):
            stack += list(x)
    return found


def _real(path: str) -> str:
    return os.path.realpath(path)


def known_files(demo) -> set[str]:
    """The files a client may name: this process's uploads and the files the app handed out."""
    known = set(demo.upload_file_set)
    for block in demo.blocks.values():
        known |= getattr(block, "temp_files", set())
    return {_real(p) for p in known}


def check_reference(ref: dict, known: set[str]) -> str:
    """The reference's path, resolved, if a client may name it; else ValueError."""
    path = ref.get("path")
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > MAX_PATH:
        raise ValueError("a file must be uploaded through the app")
    if "://" in path or path.startswith("//"):
        raise ValueError("a file must be uploaded through the app; the server fetches no URL")
    real = _real(path)
    if real not in known:
        raise ValueError("a file must be uploaded through the app")
    try:
        mode = os.stat(real).st_mode
    except OSError:
        raise ValueError("the uploaded file is gone; upload it again") from None
    if not stat.S_ISREG(mode):
        raise ValueError("a file must be uploaded through the app")
    return real


def _names(block_fn) -> list[str]:
    """The endpoint's inputs, as a message names them: labels, else the function's
    parameter names."""
    try:
        params = list(inspect.signature(block_fn.fn).parameters)
    except (TypeError, ValueError):
        params = []
    if len(params) >= len(block_fn.inputs):
        return params[:len(block_fn.inputs)]
    return [getattr(b, "label", None) or f"value {i + 1}" for i, b in enumerate(block_fn.inputs)]


def _check_files(block_fn, inputs, known) -> None:
    for block, value in zip(block_fn.inputs, inputs):
        if getattr(block, "data_model", None) in FILE_MODELS and value is not None and \
                not references(value):
            raise ValueError("a file must be uploaded through the app")
    for ref in references(inputs):
        check_reference(ref, known())


def guard(demo, refuse: Callable[[str], Exception]) -> None:
    """Check every request to `demo` before Gradio handles it: the number of values, every
    file reference; and any error of Gradio's own preprocessing becomes one line.
    `refuse(message)` makes the exception the client sees (a gr.Error)."""
    preprocess_data = demo.preprocess_data

    async def checked(block_fn, inputs, state, explicit_call: bool = False):
        names = _names(block_fn)
        if not isinstance(inputs, list) or len(inputs) != len(names):
            got = len(inputs) if isinstance(inputs, list) else "no list"
            raise refuse(f"this endpoint takes {len(names)} values ({', '.join(names)}), "
                         f"got {got}")
        try:
            _check_files(block_fn, inputs, lambda: known_files(demo))
            return await preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as e:       # noqa: BLE001  (Gradio's refusal of a malformed value)
            raise refuse(_first_line(e)) from None

    demo.preprocess_data = checked


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    if "validation error for" in line and len(text) > 1:     # pydantic: the reason is below
        line = text[1].strip()
    return line if len(line) <= 200 else line[:197] + "..."


def unknown_endpoint(app) -> None:
    """A call to an API name that does not exist: HTTP 404 with one line (Gradio answers 500,
    with a traceback in the log). `app`: the FastAPI app the Gradio app is mounted on."""
    from fastapi.responses import JSONResponse
    from gradio.route_utils import FnIndexInferError
    from starlette.routing import Mount

    def not_found(request, exc):
        return JSONResponse({"error": f"no such endpoint: {str(exc).rsplit(': ', 1)[-1][:80]}"},
                            status_code=404)
    for route in app.routes:
        if isinstance(route, Mount) and hasattr(route.app, "get_blocks"):
            route.app.add_exception_handler(FnIndexInferError, not_found)
