"""Tiny tasks and models shared by the core tests, and a server on a port of its own."""
import contextlib
import random
import socket
import threading
import time

import torch

from shared.model import Seq2Seq, Seq2SeqConfig

BOS, EOS, PAD = 2, 3, 0
VOCAB = 12          # 0-3 specials, 4-11 symbols


def copy_pairs(n, seed=0, lo=2, hi=5, reverse=False):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [rng.randrange(4, VOCAB) for _ in range(rng.randint(lo, hi))]
        out.append((s, s[::-1] if reverse else list(s)))
    return out


def tiny_model(cell, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(src_vocab=VOCAB, tgt_vocab=VOCAB, cell=cell, emb_dim=16, hidden=32,
               enc_layers=1, dec_layers=1, dropout=0.0)
    cfg.update(kw)
    return Seq2Seq(Seq2SeqConfig(**cfg))


def export_tiny(folder, tokenizer, model_config, card: dict, seed: int = 0, extra_files=None):
    """An untrained tiny model (emb 16, hidden 32, one decoder layer) of a task's shape,
    exported as the real one is: the rules guarantee the form whatever the model's quality, so
    writer, CLI, batch and app behaviour can be tested fast."""
    from shared.checkpoint import export_model
    from shared.config import apply_overrides
    cfg = apply_overrides(model_config(tokenizer.vocab_size),
                          ["emb_dim=16", "hidden=32", "dec_layers=1"])
    torch.manual_seed(seed)
    export_model(folder, Seq2Seq(cfg), tokenizer, card, extra_files=extra_files)
    return folder


# The tiny tune model's alphabet and rhythm counts (tests/conftest.py tune_model_dir)
from poetry.tunes import abc  # noqa: E402

TUNE_NOTES = [acc + n for n in ("G,", "A,", "B,", "C", "D", "E", "F", "G", "A", "B", "c", "d",
                                "e", "f", "g", "a", "b", "c'", "d'", "e'")
              for acc in ("", "^", "_", "=")]
TUNE_DURATIONS = ["2", "3", "4", "6", "8", "12", "16", "/2", "3/2", "/4", "3/4"]
TUNE_TOKENS = list(abc.BARS) + ["[1", "[2", "(2", "(3", "(4", "z", "-"] + TUNE_NOTES + \
    TUNE_DURATIONS
RHYTHMS = {"6/8": {"jig": 9, "song": 4, "other": 1}, "2/4": {"song": 9, "march": 2},
           "4/4": {"reel": 5, "hornpipe": 3, "song": 2}}


@contextlib.contextmanager
def serving(app):
    """The ASGI `app` served by uvicorn in a thread on a loopback socket bound to port 0 and
    kept (the system's free port, which nothing else can take between a check and a bind):
    its address, once it accepts connections."""
    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the app did not start within 60 s"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
