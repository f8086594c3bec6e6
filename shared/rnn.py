"""LSTM and GRU layers that run under CPU bf16 autocast.

`nn.LSTM`/`nn.GRU` run one fused oneDNN kernel in fp32. Under `torch.autocast("cpu",
torch.bfloat16)` what torch 2.13 does depends on the CPU: with AMX (measured 2026-12-01, a Xeon
with `amx_bf16`) oneDNN builds its bf16 LSTM and GRU primitives, forward and backward, ~2.6x
faster than fp32 at the reference size; without AMX it fails ("could not create a primitive
descriptor"), and autocast leaves GRU in fp32 altogether (`python -m shared.bench` prints both).
These subclasses keep the exact parameters of `nn.LSTM`/`nn.GRU` (state dicts are
interchangeable), behave identically without autocast, and, only while CPU autocast is on:

  * call oneDNN's bf16 kernel with bf16 copies of input, states and weights, where a one-off
    probe (`native_bf16`) shows it builds on this CPU;
  * else run the recurrence themselves: the input projection of all time steps is one large
    bf16 matmul, each step one (batch, hidden) x (hidden, gates*hidden) bf16 matmul, gate
    nonlinearities and the LSTM cell state in fp32, so long memories do not round away.

bf16 pays only where the CPU multiplies bf16 natively; `shared.precision` measures it.

Single layer, batch_first, unpacked input only: `shared.model.Stack` stacks them itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu")


_NATIVE: dict[str, bool] = {}


def native_bf16(cell: str) -> bool:
    """Whether torch's fused bf16 kernel for `cell` runs forward and backward on this CPU
    (probed once per process on a tiny layer)."""
    if cell not in _NATIVE:
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](8, 8, batch_first=True)
        x = torch.randn(2, 3, 8, requires_grad=True)
        try:
            with torch.autocast("cpu", enabled=False):
                out, _ = _native(layer, x, None, cell)
                out.float().sum().backward()
            _NATIVE[cell] = out.dtype == torch.bfloat16 and x.grad is not None
        except RuntimeError:
            _NATIVE[cell] = False
    return _NATIVE[cell]


def _native(layer, x, hx, cell):
    """The fused kernel on bf16 copies (the casts are differentiable: fp32 master weights
    get the gradients). Returns bf16 output and states."""
    bf = torch.bfloat16
    weights = [w.to(bf) for w in layer._flat_weights]
    if hx is None:
        dirs = 2 if layer.bidirectional else 1
        h = x.new_zeros(dirs, x.size(0), layer.hidden_size, dtype=bf)
        hx = (h, h) if cell == "lstm" else h
    elif cell == "lstm":
        hx = (hx[0].to(bf), hx[1].to(bf))
    else:
        hx = hx.to(bf)
    fn = torch._VF.lstm if cell == "lstm" else torch._VF.gru
    out, *states = fn(x.to(bf), hx, weights, layer.bias, 1, 0.0, layer.training,
                      layer.bidirectional, True)
    return out, (tuple(states) if cell == "lstm" else states[0])


def _bf16_forward(layer, x, hx, cell):
    if native_bf16(cell):
        with torch.autocast("cpu", enabled=False):
            return _native(layer, x, hx, cell)
    return _run(layer, x, hx, cell)


def _run(layer, x, hx, cell):
    """All directions of a single-layer RNN. x: (batch, time, input); hx as nn.LSTM/nn.GRU take it.
    Returns output (batch, time, dirs*hidden) and final states shaped as nn.LSTM/nn.GRU return."""
    outs, hs, cs = [], [], []
    for d in range(2 if layer.bidirectional else 1):
        sfx = "_l0" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(layer, "weight_ih" + sfx), getattr(layer, "weight_hh" + sfx)
        b_ih, b_hh = getattr(layer, "bias_ih" + sfx), getattr(layer, "bias_hh" + sfx)
        inp = x.flip(1) if d else x
        # LSTM: both biases fold into the one big input projection. GRU: b_hn sits inside
        # r * (W_hn h + b_hn), so b_hh stays in the recurrence.
        xp = F.linear(inp, w_ih, b_ih + b_hh if cell == "lstm" else b_ih)   # (B, T, gates*H)
        w = w_hh.t().to(xp.dtype)            # cast once per call, not once per step
        if hx is None:
            h = xp.new_zeros(x.size(0), layer.hidden_size, dtype=torch.float32)
            c = torch.zeros_like(h)
        elif cell == "lstm":
            h, c = hx[0][d].float(), hx[1][d].float()
        else:
            h, c = hx[d].float(), None
        steps = []
        for t in range(xp.size(1)):
            rec = torch.mm(h.to(w.dtype), w).float()                     # (B, gates*H)
            if cell == "lstm":
                i, f, g, o = (xp[:, t].float() + rec).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xr, xz, xn = xp[:, t].float().chunk(3, 1)
                hr, hz, hn = (rec + b_hh).chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            steps.append(h)
        out = torch.stack(steps, 1).to(xp.dtype)
        outs.append(out.flip(1) if d else out)
        hs.append(h)
        cs.append(c)
    out = torch.cat(outs, -1) if len(outs) > 1 else outs[0]
    if cell == "lstm":
        return out, (torch.stack(hs), torch.stack(cs))
    return out, torch.stack(hs)


class LSTM(nn.LSTM):
    def forward(self, x, hx=None):
        return _bf16_forward(self, x, hx, "lstm") if _autocast_on() else super().forward(x, hx)


class GRU(nn.GRU):
    def forward(self, x, hx=None):
        return _bf16_forward(self, x, hx, "gru") if _autocast_on() else super().forward(x, hx)
