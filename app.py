"""Shiyu's Gradio app: one tab per task (chat, poems, tunes), plus batch and model-info tabs.

    python app.py [--port 7860] [--host 127.0.0.1]        (or: make app)

Models load once per process, on first use. Every action is a named API endpoint that
`gradio_client` can call: /chat (one message in, the reply streamed out), /reply (a whole
conversation in, the next turn out), /write_poems, /write_tunes, /run_batch, /model_info.
The same server answers OpenAI clients at /v1/chat/completions and /v1/models
(chatbot/openai_api.py).
Bad input shows one clear message and logs one line, never a traceback: an endpoint raises it
(gr.Error) for the script that called it; on the page it is a toast, and the chat and every
output keep what they showed (the page's buttons run the same handlers through
handlers.on_page). Examples run when clicked.
"""
# This file is the page: its layout and wiring. What each action does is in server/
# (handlers.py, chat.py, batch.py, models.py; how results are shown, show.py); the files it
# writes, and their bounds, in server/files.py.
from __future__ import annotations

import argparse
import socket
from pathlib import Path

from server.memory import fewer_malloc_arenas, trim_memory_every

fewer_malloc_arenas()

from server import files  # noqa: E402  (before gradio: it makes Gradio's folder)

import gradio as gr  # noqa: E402  (after the arena limit: gradio and torch start threads)

from chatbot import openai_api
from chatbot.bot import Bot
from poetry.poems import PoemWriter
from poetry.poems.verse import FORMS
from poetry.tunes.abc import METERS
from poetry.tunes.rules import FORMS as TUNE_FORMS
from poetry.tunes.writer import known_rhythms
from server import handlers
from server.batch import MAX_UPLOAD_MB, run_batch
from server.chat import chat, chat_turn, reply
from server.handlers import LIMITS, _quiet, _refuse, on_page, write_poems, write_tunes
from server.inputs import guard, unknown_endpoint
from server.models import SCROLL_HINT, _card, curves, model_info, models_table

FORM_CHOICES = [(f"{f.zh} ({f.name})", f.name) for f in FORMS.values()]


# Wide tables (the Models table, a batch preview) scroll inside their block at phone width,
# and a table's first column (the row names) never breaks inside a word; the Models table
# keeps its row names in sight as it scrolls, and says that it scrolls where it must.
CSS = """
.prose table { display: block; overflow-x: auto; }
.prose td:first-child { white-space: nowrap; }
#models-table td:first-child, #models-table th:first-child {
  position: sticky; left: 0; background: var(--background-fill-primary); }
#scroll-hint { display: none; }
@media (max-width: 720px) { #scroll-hint { display: block; } }
"""


def build_app(poem_dir: str | Path | None = None, tune_dir: str | Path | None = None,
              chat_dir: str | Path | None = None, concurrency: int = 1) -> gr.Blocks:
    """The Blocks app; each *_dir overrides that task's shipped model folder, for this app's
    handlers alone (`demo.model_dirs`; handlers.MODEL_DIRS stays as it was). `concurrency`:
    requests one endpoint runs at once (the endpoints run beside each other anyway)."""
    dirs = {task: Path(d) if d else None
            for task, d in (("chat", chat_dir), ("poem", poem_dir), ("tune", tune_dir))}
    with handlers.using(dirs):                 # the cards the page shows as it is built
        demo = _blocks(concurrency)
    for block_fn in demo.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = handlers.bound(block_fn.fn, dirs)
    demo.model_dirs = dirs
    return demo


def _blocks(concurrency: int) -> gr.Blocks:
    age = files.SCRATCH_AGE         # Gradio's cache copies of downloads go on the same schedule
    with gr.Blocks(title="Shiyu 诗语", delete_cache=(age, age)) as demo:
        gr.Markdown("# Shiyu 诗语\nChat, classical Chinese poems and folk tunes from one "
                    "LSTM seq2seq core, trained on public corpora, running on a CPU.")
        with gr.Tabs(overflow_behavior="wrap"):      # all tabs in sight at phone width
            with gr.Tab("Chat 聊天"):
                chatbot = gr.Chatbot(label="Shiyu 诗语", height=440, buttons=["copy"])
                # no length cap in the box, which would cut a paste without a word: the bot
                # reads a long message's end, and says so
                box = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                                 submit_btn=True)
                cex = gr.Examples([["hi! how was your weekend?"],
                                   ["what kind of music do you like?"],
                                   ["你好！你叫什么名字？"]], [box], label="Examples")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        ctemp = gr.Slider(*LIMITS["chat temperature"], value=Bot.TEMPERATURE,
                                          step=0.05, label="Temperature")
                        cseed = gr.Textbox(value="", label="Seed (empty = random)")
                # a message sent, or an example clicked (which fills the box first)
                for event in (box.submit, cex.load_input_event.then):
                    event(chat_turn, [box, chatbot, ctemp, cseed], [box, chatbot],
                          api_visibility="private", show_progress="hidden").then(
                        None, js="() => { window.shiyuTurns = (window.shiyuTurns || 0) + 1; }")
                # (a count of finished turns in the page, which the browser tests wait on)
                # /chat for scripts: one message in, the reply streamed out
                message = gr.Textbox(visible=False, label="message")
                answer = gr.Textbox(visible=False)
                gr.Button(visible=False).click(chat, [message, ctemp, cseed], answer,
                                               api_name="chat")
                gr.api(reply, api_name="reply")
            with gr.Tab("Poems 诗"):
                with gr.Row():
                    with gr.Column():
                        theme = gr.Textbox(label="Theme 主题", value="明月", max_length=40)
                        form = gr.Dropdown(FORM_CHOICES, value="qijue", label="Form 体裁")
                        n = gr.Slider(*LIMITS["poems"], value=1, step=1, label="Poems")
                        acrostic = gr.Textbox(value="",
                                              label="Acrostic 藏头 (one character per line)")
                        start = gr.Textbox(value="", label="Opening line(s) 首句")
                        keywords = gr.Textbox(
                            value="", max_length=40,
                            label="Keywords 关键词 (empty = planned from the theme)")
                        with gr.Row():
                            rhyme = gr.Checkbox(value=True, label="Rhyme 押韵")
                            strict = gr.Checkbox(value=False, label="Strict 平仄")
                        temperature = gr.Slider(*LIMITS["poem temperature"],
                                                value=PoemWriter.TEMPERATURE, step=0.05,
                                                label="Temperature")
                        seed = gr.Textbox(value="", label="Seed (empty = random)")
                        go = gr.Button("Write 作诗", variant="primary")
                    with gr.Column():
                        poem_out = gr.Textbox(label="Poems", lines=14, buttons=["copy"],
                                              elem_id="poems")
                        poem_notes = gr.Markdown(elem_id="poem-details")
                        poem_files = gr.File(label="Download .txt / .jsonl",
                                             file_count="multiple")
                poem_inputs = [theme, form, n, acrostic, start, rhyme, strict, temperature, seed,
                               keywords]
                poem_outputs = [poem_out, poem_notes, poem_files]
                go.click(on_page(write_poems), poem_inputs, poem_outputs,
                         api_name="page_write_poems", api_visibility="private")
                gr.Button(visible=False).click(write_poems, poem_inputs, poem_outputs,
                                               api_name="write_poems")
                T = PoemWriter.TEMPERATURE
                pex = gr.Examples([["明月", "qijue", 1, "", "", True, False, T, "1", ""],
                                   ["秋夜", "wulv", 1, "", "", True, False, T, "2", "蟋蟀 砧声"],
                                   ["春", "wujue", 1, "春夏秋冬", "", True, False, T, "3", ""],
                                   ["送别", "qilv", 2, "", "", True, False, T, "4", ""]],
                                  poem_inputs, label="Examples 示例",
                                  example_labels=["明月 · 七绝", "秋夜 · 五律 · 蟋蟀 砧声",
                                                  "春 · 五绝 · 藏头 春夏秋冬", "送别 · 七律 × 2"])
                pex.load_input_event.then(on_page(write_poems), poem_inputs, poem_outputs,
                                          api_name="example_write_poems",
                                          api_visibility="private")
            with gr.Tab("Tunes 曲"):
                with gr.Row():
                    with gr.Column():
                        meter = gr.Dropdown(list(METERS), value="6/8", label="Meter")
                        key = gr.Textbox(value="Dmaj", label="Key (ABC, e.g. D, Ador, Emin, Gmix)")
                        rhythms = [("(the meter's most common)", "")] + \
                            known_rhythms(_card("tune"))
                        rhythm = gr.Dropdown(rhythms, value="jig", label="Rhythm")
                        forms = [("(the rhythm's usual form)", "")] + list(TUNE_FORMS)
                        tform = gr.Dropdown(forms, value="",
                                            label="Form (AABB: two repeated 8-bar parts)")
                        tstart = gr.Textbox(value="",
                                            label="Opening bar(s) in ABC, e.g. |:A2B c2d|")
                        tn = gr.Slider(*LIMITS["tunes"], value=1, step=1, label="Tunes")
                        ttemp = gr.Slider(*LIMITS["tune temperature"], value=1.0, step=0.05,
                                          label="Temperature")
                        ttempo = gr.Slider(*LIMITS["tempo"], value=120, step=1,
                                           label="Tempo (quarter notes a minute)")
                        tseed = gr.Textbox(value="", label="Seed (empty = random)")
                        tgo = gr.Button("Compose 作曲", variant="primary")
                    with gr.Column():
                        # copy only: the Code box would save the ABC as file.txt, and
                        # tunes.abc is in the downloads below
                        abc_out = gr.Code(label="ABC", buttons=["copy"], elem_id="abc")
                        score = gr.HTML(label="Score")
                        # no share button: it posts to Hugging Face Spaces only
                        audio = gr.Audio(label="Listen", type="filepath", buttons=["download"],
                                         elem_id="listen")
                        abc_file = gr.File(label="Download ABC, MIDI and WAV",
                                           file_count="multiple")
                tune_inputs = [meter, key, rhythm, tstart, tn, ttemp, tseed, tform, ttempo]
                tune_outputs = [abc_out, score, audio, abc_file]
                tgo.click(on_page(write_tunes), tune_inputs, tune_outputs,
                          api_name="page_write_tunes", api_visibility="private")
                gr.Button(visible=False).click(write_tunes, tune_inputs, tune_outputs,
                                               api_name="write_tunes")
                tex = gr.Examples([["6/8", "Dmaj", "jig", "", 1, 1.0, "1", "", 120],
                                   ["4/4", "Gmaj", "reel", "", 1, 1.0, "2", "AABB", 160],
                                   ["3/4", "Gmaj", "song", "", 1, 1.0, "3", "", 90]],
                                  tune_inputs, label="Examples",
                                  example_labels=["jig in D, 6/8", "reel in G, AABB, ♩ = 160",
                                                  "song in G, 3/4, ♩ = 90"])
                tex.load_input_event.then(on_page(write_tunes), tune_inputs, tune_outputs,
                                          api_name="example_write_tunes",
                                          api_visibility="private")
            with gr.Tab("Batch 批量"):
                gr.Markdown("One message per line or JSONL conversations (chat), one theme per "
                            "line (poems) or JSONL settings (tunes); the result is a JSONL file "
                            "with one line per input item, in order.")
                bfile = gr.File(label="Input", type="filepath")
                btask = gr.Radio(["chat", "poem", "tune"], value="poem", label="Task")
                bform = gr.Dropdown(FORM_CHOICES, value="qijue", label="Poem form")
                btask.change(lambda task: gr.update(visible=task == "poem"), btask, bform,
                             api_visibility="private", show_progress="hidden")
                bn = gr.Slider(*LIMITS["results per item"], value=1, step=1, label="Per item")
                bseed = gr.Number(value=0, precision=0, minimum=LIMITS["seed"][0],
                                  maximum=LIMITS["seed"][1], label="Seed")
                bgo = gr.Button("Run", variant="primary")
                bout, bsum, bview = gr.File(label="Result"), gr.Markdown(), gr.Markdown()
                batch_inputs, batch_outputs = [bfile, btask, bform, bn, bseed], [bout, bsum,
                                                                                 bview]
                bgo.click(on_page(run_batch), batch_inputs, batch_outputs,
                          api_name="page_run_batch", api_visibility="private")
                gr.Button(visible=False).click(run_batch, batch_inputs, batch_outputs,
                                               api_name="run_batch")
                ex = Path(__file__).resolve().parent / "data" / "examples"
                bex = gr.Examples([[str(ex / "themes.txt"), "poem", "qijue", 1, 0],
                                   [str(ex / "messages.txt"), "chat", "qijue", 2, 0],
                                   [str(ex / "tunes.jsonl"), "tune", "qijue", 1, 0]],
                                  batch_inputs, label="Examples",
                                  example_labels=["4 themes → poems",
                                                  "3 messages → 2 replies each",
                                                  "3 tune settings → tunes"])
                bex.load_input_event.then(on_page(run_batch), batch_inputs, batch_outputs,
                                          api_name="example_run_batch",
                                          api_visibility="private")
            with gr.Tab("Models"):
                cards = model_info()
                gr.Markdown(SCROLL_HINT, elem_id="scroll-hint")
                table = gr.Markdown(models_table(cards), elem_id="models-table")
                val, grad = curves(cards)
                with gr.Row():
                    # a point an epoch: a model trained (or fine-tuned) one epoch has one, which
                    # a line plot would not draw
                    vplot = gr.ScatterPlot(val, x="epoch", y="perplexity", color="model",
                                           title="Validation perplexity per epoch")
                    gplot = gr.LinePlot(grad, x="step", y="gradient norm", color="model",
                                        title="Gradient norm before clipping (clip at 1.0)")
                with gr.Accordion("Model cards (JSON)", open=False):
                    info = gr.JSON(cards, label="Model cards")
                gr.Button("Reload cards", size="sm").click(
                    model_info, None, info, api_name="model_info").then(
                    lambda c: (models_table(c), *curves(c)), info, [table, vplot, gplot],
                    api_visibility="private")       # the table and plots follow the cards
    for block in demo.blocks.values():
        if isinstance(block, gr.components.Component):
            _quiet(block)
    files.pin_examples(demo)            # the examples' files stay as long as the page does
    demo.queue(max_size=32, default_concurrency_limit=concurrency)
    guard(demo, _refuse)                # the values and files of every request, checked first
    return demo


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port (0: any free one; the address "
                    "is printed when the server listens)")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="requests each endpoint runs at once (default 1)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for the models (default: torch's, one per core)")
    for task in ("chat", "poem", "tune"):
        ap.add_argument(f"--{task}-model", metavar="DIR",
                        help=f"the {task} model folder (default: the shipped one)")
    args = ap.parse_args(argv)
    if args.concurrency < 1 or args.threads < 0 or not 0 <= args.port <= 65535:
        ap.error("--concurrency must be at least 1, --threads at least 0, --port 0-65535")
    for d in (args.chat_model, args.poem_model, args.tune_model):
        if d is not None and not (Path(d) / "card.json").is_file():
            ap.error(f"{d} is not a model folder (it has no card.json)")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        ap.error(f"cannot listen on {args.host}:{args.port}: {e.strerror}")
    host, port = sock.getsockname()[:2]
    app = server(concurrency=args.concurrency, chat_dir=args.chat_model,
                 poem_dir=args.poem_model, tune_dir=args.tune_model)
    trim_memory_every()
    import uvicorn
    print(f"Shiyu is at http://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}/",
          flush=True)
    uvicorn.Server(uvicorn.Config(app)).run(sockets=[sock])


def server(**options):
    """The whole server: the OpenAI-compatible /v1 routes (chatbot/openai_api.py) with the
    Gradio app mounted beside them on one FastAPI app. `options` go to build_app."""
    demo = build_app(**options)
    api = openai_api.create_app(lambda: handlers.writer("chat", demo.model_dirs))
    app = gr.mount_gradio_app(api, demo, path="/", css=CSS, max_file_size=f"{MAX_UPLOAD_MB}mb")
    unknown_endpoint(app)
    demo.has_launched = True        # Gradio's own check of the files a request names, which only
    return app                      # launch() switches on; server/inputs.py checks them first


if __name__ == "__main__":
    main()
