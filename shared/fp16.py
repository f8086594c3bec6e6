"""Half-size weights for generation: the same model, half the bytes per generated token.

Generating one token reads every decoder weight and the whole output projection once, for a
batch of one to a few rows: matrix-vector products, limited by memory traffic, not arithmetic.
For the poem model that is ~7.5 MB of fp32 per character, more than this CPU's caches keep
between steps. `Fp16Decoder` stores those matrices in fp16 and multiplies them with fbgemm's
fp16-weight kernels: weights are widened to fp32 in registers, activations and sums stay fp32,
so each row's result depends on that row alone (unlike dynamic int8, which quantizes the
activations of the whole batch with one scale: measured as fast here, but a row's poem then
changes with its batch-mates). Gate nonlinearities, the LSTM cell state and the encoder stay fp32.

    fast = Fp16Decoder(model)        # model: a trained shared.model.Seq2Seq (unchanged)
    generate(fast, src, src_len, cfg, ...)   # anything that calls encode / decode_step

What it costs in quality is measured, not assumed: `shared.trainer.evaluate(..., stepwise=True)`
scores held-out data through any `decode_step`, and `python -m poetry.evaluate poem` prints both. Training and teacher-forced
evaluation use the fp32 model.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import torch

from .model import Seq2Seq, State
from .precision import cpu_flags


def available() -> bool:
    """True when this torch build has fbgemm's fp16-weight linear kernels (x86 builds)."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def _pack(weight: torch.Tensor, bias: torch.Tensor | None, kind: str = "fp16"):
    """(out, in) fp32 weight (+ bias) -> fbgemm's packed fp16 form, or for "bf16" the bf16
    weight and the fp32 bias."""
    weight = weight.detach().float().contiguous()
    bias = None if bias is None else bias.detach().float().contiguous()
    if kind == "bf16":
        return weight.bfloat16(), bias
    return torch.ops.quantized.linear_prepack_fp16(weight, bias)


def _linear(x: torch.Tensor, packed) -> torch.Tensor:
    if isinstance(packed, tuple):   # bf16: inputs and results rounded to bf16, sums inside fp32
        y = torch.nn.functional.linear(x.bfloat16(), packed[0]).float()
        return y if packed[1] is None else y + packed[1]
    return torch.ops.quantized.linear_dynamic_fp16(x.contiguous(), packed)


class Fp16Decoder:
    """Encoder and decoder of `model` for generation, with fp16 decoder and projection weights.
    Follows `Seq2Seq.decode_step` exactly, except for the fp16 rounding of those weights.
    kind="bf16": bf16 weights instead, multiplied by oneDNN: each product's inputs and results
    are rounded to bf16 (8 bits of mantissa: a logit near 10 to steps of 0.06), its sums and
    everything else stay fp32. Its perplexity is what the evaluations report."""

    def __init__(self, model: Seq2Seq, kind: str = "fp16"):
        if kind == "fp16" and not available():
            raise RuntimeError("this torch build has no fbgemm fp16 kernels")
        self.model, self.cfg, self.kind = model.eval(), model.cfg, kind
        self.lstm = self.cfg.cell == "lstm"
        self.layers = []
        self.ctx = None          # packed share of the encoder summary in layer 0's input product
        emb = self.cfg.emb_dim
        with torch.no_grad():
            for i, layer in enumerate(model.decoder.layers):
                w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
                b_ih, b_hh = layer.bias_ih_l0, layer.bias_hh_l0
                # LSTM: one product, [x ; h] @ [W_ih ; W_hh]^T + both biases. GRU: r gates
                # W_hn h + b_hn, so the two products stay apart.
                w, b = (torch.cat([w_ih, w_hh], 1), b_ih + b_hh) if self.lstm else (w_ih, b_ih)
                if i == 0 and self.cfg.feed_context:
                    # the summary is the same at every step: its share of the product (and
                    # the bias) is computed once per sequence, not once per token
                    self.ctx = _pack(w[:, emb:emb + self.cfg.hidden], b, kind)
                    w, b = torch.cat([w[:, :emb], w[:, emb + self.cfg.hidden:]], 1), None
                self.layers.append((_pack(w, b, kind),) if self.lstm
                                   else (_pack(w, b, kind), _pack(w_hh, b_hh, kind)))
            if self.cfg.tie_embeddings:
                self.pre = model.out_proj                    # (hidden -> emb), small: fp32
                self.proj = _pack(model.tgt_emb.weight, model.out_bias, kind)
            else:
                self.pre = None
                self.proj = _pack(model.out_proj.weight, model.out_proj.bias, kind)

    def eval(self) -> "Fp16Decoder":
        return self

    def products(self) -> list:
        """The packed fp16 products one decode step runs, in order (for timing them alone)."""
        return [p for layer in self.layers for p in layer] + [self.proj]

    def product_inputs(self) -> list[int]:
        """The input width of each of `products()`."""
        c, H = self.cfg, self.cfg.hidden
        sizes = []
        for i in range(c.dec_layers):
            x = c.emb_dim if i == 0 else H
            sizes += [x + H] if self.lstm else [x, H]
        return sizes + [c.emb_dim if c.tie_embeddings else H]

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        return self.model.encode(src, src_len)

    def _context_gates(self, context: torch.Tensor) -> torch.Tensor:
        """Layer 0's gate share of the summary (+ bias), (batch, gates*hidden); computed once
        per context tensor (a new sequence, beams reordered) and kept on that tensor, so it
        goes with it and concurrent requests never see each other's."""
        kept = getattr(context, "_shiyu_gates", None)
        if kept is None or kept[0] is not self:
            kept = (self, _linear(context.float(), self.ctx))
            context._shiyu_gates = kept
        return kept[1]

    def decode_step(self, tokens: torch.Tensor, state: State):
        """tokens: (batch,) previous tokens -> logits (batch, vocab) fp32 and the new state."""
        fp32 = (torch.autocast("cpu", enabled=False) if torch.is_autocast_enabled("cpu")
                else contextlib.nullcontext())      # fp32 activations (entering costs 3 us)
        with torch.no_grad(), fp32:
            # few ops, no module calls: at batch 1 each costs what a product's row does
            x = self.model.tgt_emb.weight.index_select(0, tokens)
            hs, cs, H = [], [], self.cfg.hidden
            h_in = state.h.unbind(0)
            c_in = state.c.unbind(0) if self.lstm else None
            for i, packed in enumerate(self.layers):
                h = h_in[i]
                if self.lstm:
                    gates = _linear(torch.cat([x, h], -1), packed[0])      # (B, 4H): i f g o
                    if i == 0 and self.ctx is not None:
                        gates += self._context_gates(state.context)
                    si, sf, _, so = gates.sigmoid().chunk(4, 1)    # g takes tanh instead
                    c = torch.addcmul(sf * c_in[i], si, gates[:, 2 * H:3 * H].tanh())
                    h = so * c.tanh()
                    cs.append(c)
                else:
                    gx = _linear(x, packed[0])
                    if i == 0 and self.ctx is not None:
                        gx = gx + self._context_gates(state.context)
                    xr, xz, xn = gx.chunk(3, 1)
                    hr, hz, hn = _linear(h, packed[1]).chunk(3, 1)
                    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                    h = (1 - z) * torch.tanh(xn + r * hn) + z * h
                hs.append(h)
                x = h + x if self.cfg.residual and i > 0 and h.shape == x.shape else h
            if self.pre is not None:
                x = torch.nn.functional.linear(x, self.pre.weight, self.pre.bias)
            logits = _linear(x, self.proj)
        return logits, State(torch.stack(hs), torch.stack(cs) if cs else None, state.context)


PRECISIONS = ("fp16", "bf16", "fp32")
MARGIN = 1.1       # another precision must be >10 % faster than fp16 (half the bytes, measured
                   # closest to fp32 in perplexity) to replace it: a tie keeps fp16


def decoder(model: Seq2Seq, precision: str):
    """The generation decoder of one precision: fp32 is the model itself."""
    return model.eval() if precision == "fp32" else Fp16Decoder(model, precision)


def probe_generation(model: Seq2Seq, batch: int, steps: int = 12, reps: int = 3) -> dict:
    """Seconds per decode step at `batch` rows for each precision this build runs: after a
    warm-up each, the timed rounds alternate precisions (other jobs slow all alike) and each
    keeps its best."""
    kinds = [k for k in PRECISIONS if k != "fp16" or available()]
    decoders = {k: decoder(model, k) for k in kinds}
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, model.cfg.src_vocab, (batch, 8), generator=g)
    tokens = torch.randint(3, model.cfg.tgt_vocab, (batch,), generator=g)
    best = {}
    with torch.no_grad():
        states = {k: d.encode(src, torch.full((batch,), 8)) for k, d in decoders.items()}
        for rep in range(reps + 1):                  # round 0 warms up
            for k, d in decoders.items():
                state, t0 = states[k], time.perf_counter()
                for _ in range(steps):
                    _, state = d.decode_step(tokens, state)
                dt = (time.perf_counter() - t0) / steps
                if rep:
                    best[k] = min(best.get(k, dt), dt)
    return best


def choose_generation(seconds: dict, margin: float = MARGIN) -> str:
    """fp16 unless another precision measured faster by `margin` (fp32 without fp16 kernels)."""
    base = "fp16" if "fp16" in seconds else "fp32"
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] * margin < seconds[base] else base


def _cache_path() -> Path:
    return Path(os.environ.get("SHIYU_CACHE") or Path.home() / ".cache" / "shiyu") \
        / "generation-precision.json"


def generation_precision(model: Seq2Seq, batch: int) -> dict:
    """{"precision", "probe_s", "cpu_flags", "batch"}: the precision `probe_generation` picks
    for this model's shape on this machine. The probe runs once per machine, torch version and
    shape: the choice is kept in ~/.cache/shiyu (SHIYU_CACHE elsewhere) so that every later
    process decodes alike (same seed, same text), and is timed again only when that file goes."""
    c = model.cfg
    key = (f"{cpu_flags()} torch {torch.__version__} {c.cell} emb {c.emb_dim} hidden "
           f"{c.hidden} layers {c.dec_layers} vocab {c.tgt_vocab} tied {c.tie_embeddings} "
           f"batch {batch}")
    path = _cache_path()
    with _locked(path.with_name(path.name + ".lock")):   # processes starting together (torchrun
        try:                                            # ranks, the app and a CLI) agree: the
            known = json.loads(path.read_text())        # first probes, the others read
        except (OSError, ValueError):
            known = {}
        known = known if isinstance(known, dict) else {}
        if not isinstance(known.get(key), dict) or known[key].get("precision") not in PRECISIONS:
            seconds = probe_generation(model, batch)
            known[key] = {"precision": choose_generation(seconds), "cpu_flags": cpu_flags(),
                          "batch": batch,
                          "probe_s": {k: round(v, 6) for k, v in seconds.items()}}
            from .data import write_text                # (imports datasets: only here)
            with contextlib.suppress(OSError):          # a read-only home: chosen per process
                write_text(path, json.dumps(known, indent=1))
    return known[key]


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (created) for the block; none where it cannot be made."""
    try:
        import fcntl
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
    except (ImportError, OSError):
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def for_generation(model: Seq2Seq, precision: str = "auto", batch: int = 8):
    """(decoder, record) for a writer: "auto" picks by `generation_precision` at `batch` rows
    (the writer's candidates); "fp16", "bf16" or "fp32" force one (fp16 falls back to fp32
    where this build lacks the kernels)."""
    if precision == "auto":
        record = generation_precision(model, batch)
    elif precision in PRECISIONS:
        record = {"precision": precision if precision != "fp16" or available() else "fp32"}
    else:
        raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, "
                         f"not {precision!r}")
    return decoder(model, record["precision"]), record


@contextlib.contextmanager
def fp32_generation(owner):
    """Within the block, `owner.decoder` (a writer's or bot's generation decoder) is its fp32
    `owner.model`: for measuring what the fp16 weights bring."""
    fast, owner.decoder = owner.decoder, owner.model
    try:
        yield owner
    finally:
        owner.decoder = fast
