"""LSTM and GRU layers that run under CPU bf16 autocast.

`nn.LSTM`/`nn.GRU` run one fused oneDNN kernel in fp32. Under `torch.autocast("cpu",
torch.bfloat16)` what torch 2.13 does depends on the CPU: with AMX (measured 2026-12-01, a Xeon
with `amx_bf16`) oneDNN builds its bf16 LSTM and GRU primitives, forward and backward, ~2.6x
faster than fp32 at the reference size; on the AMD EPYC with `avx512_bf16` and no AMX it
builds them too (~1.6x faster than fp32 there); on a CPU without native bf16 it has failed
("could not create a primitive descriptor"), and autocast leaves GRU in fp32 altogether
(`python -m shared.bench` prints both).
These subclasses keep the exact parameters of `nn.LSTM`/`nn.GRU` (state dicts are
interchangeable), behave identically without autocast, and, only while CPU autocast is on:

  * call oneDNN's bf16 kernel with bf16 copies of input, states and weights, where a one-off
    probe (`native_bf16`) shows it builds on this CPU;
  * else run the recurrence themselves: the input projection of all time steps is one large
    bf16 matmul, each step one (batch, hidden) x (hidden, gates*hidden) bf16 matmul, gate
    nonlinearities and the LSTM cell state in fp32, so long memories do not round away.

bf16 pays only where the CPU multiplies bf16 natively; `shared.precision` measures it.

A `static` input (the decoder's encoder summary: the same vector at every step) is appended to
every step's input. The LSTM then runs its own recurrence (`LSTMRecurrence`) so that the
summary's share of the input projection is one (batch, hidden) product per sequence, not one
per step: a sixth of the reference decoder's FLOPs. In fp32, measured at B 64, T 48, hidden
512, one thread: 430 ms forward+backward vs 530 ms for nn.LSTM on the concatenated input.
Under bf16 autocast it runs with bf16 products (fp32 gates and cell state), on every CPU:
on the AVX-512 AMD EPYC without AMX (2026-12-07), 244-281 ms against 336-346 ms for oneDNN's
bf16 kernel on the concatenated input (and 409-438 ms in fp32), gradients as close to fp32's
as oneDNN's (not timed on an AMX CPU, where oneDNN's bf16 kernel is faster than here). Without
a static input oneDNN's kernel stays (fp32: 458 ms vs 522 ms for the hand
recurrence; bf16 on that EPYC: 261-285 ms vs 281-317 ms).

Single layer, batch_first, unpacked input only: `shared.model.Stack` stacks them itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LSTMRecurrence(torch.autograd.Function):
    """The LSTM recurrence over precomputed input gates, forward and backward by hand.

    xp: (batch, time, 4*hidden) fp32 = x_t W_ih^T + b_ih + b_hh (+ any per-sequence term),
    computed by the caller as one large matmul for all steps; h0, c0: (batch, hidden); w_hh:
    (4H, H); dtype: the matrix products' dtype (fp32, or bf16 under autocast: w_hh and the
    hidden states are then kept in bf16, the gates and the cell state in fp32, as oneDNN's bf16
    kernel does). Per step the forward runs one (B, H) x (H, 4H) product and 6 elementwise
    ops, the backward one (B, 4H) x (4H, H) product and 4 ops; every other factor of the
    gradient is computed for all steps at once, and dW_hh is one (4H, T*B) x (T*B, H) product.
    Outputs and the final h are in `dtype`, the final c in fp32."""

    @staticmethod
    def forward(ctx, xp, h0, c0, w_hh, dtype):
        B, T, G = xp.shape
        H = G // 4
        xs = xp.transpose(0, 1)                                   # (T, B, 4H) view
        w = w_hh.to(dtype)
        wt = w.t()
        acts = xp.new_empty(T, B, G)          # sigma(i), sigma(f), tanh(g), sigma(o)
        hs = xp.new_empty(T + 1, B, H, dtype=dtype)
        cs, tcs = xp.new_empty(T + 1, B, H), xp.new_empty(T, B, H)
        hs[0], cs[0] = h0, c0
        pre = xp.new_empty(B, G)
        rec = None if dtype == xp.dtype else xp.new_empty(B, G, dtype=dtype)
        for t in range(T):
            if rec is None:
                torch.addmm(xs[t], hs[t], wt, out=pre)
            else:                             # the bf16 product, then the sum in fp32
                torch.add(xs[t], torch.mm(hs[t], wt, out=rec), out=pre)
            a = acts[t]
            torch.sigmoid(pre, out=a)
            torch.tanh(pre[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
            torch.mul(a[:, H:2 * H], cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(a[:, :H], a[:, 2 * H:3 * H])
            torch.tanh(cs[t + 1], out=tcs[t])
            torch.mul(a[:, 3 * H:], tcs[t], out=hs[t + 1])
        ctx.save_for_backward(acts, hs, cs, tcs, w)
        ctx.dtypes = h0.dtype, c0.dtype, w_hh.dtype
        return hs[1:].transpose(0, 1).contiguous(), hs[T].clone(), cs[T].clone()

    @staticmethod
    def backward(ctx, dout, dhT, dcT):
        acts, hs, cs, tcs, w = ctx.saved_tensors
        T, B, G = acts.shape
        H = G // 4
        i, f, g, o = acts.chunk(4, 2)                             # each (T, B, H)
        # factors that need no recurrence, for all steps at once:
        #   d pre_i = dc * g * i(1-i), d pre_f = dc * c_prev * f(1-f), d pre_g = dc * i (1-g^2)
        #   d pre_o = dh * tanh(c) * o(1-o);   dc_t += dh_t * o (1 - tanh(c)^2)
        fac = torch.cat([g * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g * g)], 2)
        fac = fac.view(T, B, 3, H)
        fo = tcs * o * (1 - o)
        k = o * (1 - tcs * tcs)
        dgates = acts.new_empty(T, B, G)
        low = w.dtype != acts.dtype           # bf16 products: each step's gate gradients cast
        dglow = acts.new_empty(T, B, G, dtype=w.dtype) if low else dgates
        douts = dout.transpose(0, 1)
        dh = douts[T - 1].to(acts.dtype) + (dhT.to(acts.dtype) if dhT is not None else 0)
        dc = dcT.clone() if dcT is not None else torch.zeros_like(dh)
        for t in range(T - 1, -1, -1):
            dc.addcmul_(dh, k[t])
            dgt = dgates[t]
            torch.mul(dc.unsqueeze(1), fac[t], out=dgt[:, :3 * H].view(B, 3, H))
            torch.mul(dh, fo[t], out=dgt[:, 3 * H:])
            dc.mul_(f[t])
            if low:
                dglow[t] = dgt
            if t:
                dh = torch.mm(dglow[t], w).to(acts.dtype).add_(douts[t - 1]) if low else \
                    torch.addmm(douts[t - 1], dgt, w)
        dh0 = (dglow[0] @ w).to(ctx.dtypes[0])
        dw = (dglow.view(T * B, G).t() @ hs[:-1].reshape(T * B, H)).to(ctx.dtypes[2])
        return dgates.transpose(0, 1), dh0, dc.to(ctx.dtypes[1]), dw, None


def _with_static(x, static):
    """(batch, time, input) + (batch, extra) -> (batch, time, input + extra)."""
    if static is None:
        return x
    return torch.cat([x, static.to(x.dtype).unsqueeze(1).expand(-1, x.size(1), -1)], -1)


def _lstm_static(layer, x, hx, static, dtype):
    """Unidirectional LSTM on [x_t ; static] for every t, the static share computed once;
    products in `dtype` (fp32, or bf16 under autocast)."""
    E, H = x.size(-1), layer.hidden_size
    w = layer.weight_ih_l0
    xp = F.linear(x, w[:, :E]).float() + F.linear(
        static, w[:, E:], layer.bias_ih_l0 + layer.bias_hh_l0).float().unsqueeze(1)
    if hx is None:
        h0 = c0 = xp.new_zeros(x.size(0), H)
    else:
        h0, c0 = hx[0][0], hx[1][0]
    out, h, c = LSTMRecurrence.apply(xp, h0, c0, layer.weight_hh_l0, dtype)
    return out, (h.unsqueeze(0), c.unsqueeze(0))


def _autocast_on() -> bool:
    return torch.is_autocast_enabled("cpu")


_NATIVE: dict[str, bool] = {}


def native_bf16(cell: str) -> bool:
    """Whether torch's fused bf16 kernel for `cell` runs forward and backward on this CPU
    (probed once per process on a tiny layer)."""
    if cell not in _NATIVE:
        try:     # on random numbers of its own: a resumed run draws what an unbroken one does
            with torch.random.fork_rng(), torch.autocast("cpu", enabled=False):
                layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](8, 8, batch_first=True)
                x = torch.randn(2, 3, 8, requires_grad=True)
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
    def forward(self, x, hx=None, static=None):
        """static: None or (batch, extra), appended to the input of every step."""
        if static is not None and not self.bidirectional:
            if _autocast_on():
                return _lstm_static(self, x, hx, static, torch.bfloat16)
            if x.dtype == torch.float32:
                return _lstm_static(self, x, hx, static.float(), torch.float32)
        if _autocast_on():
            return _bf16_forward(self, _with_static(x, static), hx, "lstm")
        return super().forward(_with_static(x, static), hx)


class GRU(nn.GRU):
    def forward(self, x, hx=None, static=None):
        x = _with_static(x, static)
        return _bf16_forward(self, x, hx, "gru") if _autocast_on() else super().forward(x, hx)
