import pytest
import torch
import torch.nn.functional as F

from shared.config import apply_overrides, from_dict
from shared.model import Seq2SeqConfig
from shared.rnn import GRU, LSTM
from tests.helpers import tiny_model


def test_config_rejects_unknown_keys_and_bad_types():
    with pytest.raises(ValueError, match="hiden"):
        from_dict(Seq2SeqConfig, {"src_vocab": 5, "tgt_vocab": 5, "hiden": 3})
    with pytest.raises(ValueError, match="'hidden'"):
        from_dict(Seq2SeqConfig, {"src_vocab": 5, "tgt_vocab": 5, "hidden": "big"})
    with pytest.raises(ValueError, match="'cell'"):
        from_dict(Seq2SeqConfig, {"src_vocab": 5, "tgt_vocab": 5, "cell": "rnn"})
    cfg = from_dict(Seq2SeqConfig, {"src_vocab": 5, "tgt_vocab": 5})
    assert apply_overrides(cfg, ["hidden=64", "cell=gru"]).hidden == 64
    with pytest.raises(ValueError, match="layers"):
        apply_overrides(cfg, ["layers=3"])


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("feed", [False, True])
@pytest.mark.parametrize("tie", [False, True])
def test_shapes_and_step_api_match_teacher_forcing(cell, bi, feed, tie):
    m = tiny_model(cell, bidirectional=bi, feed_context=feed, tie_embeddings=tie,
                   enc_layers=2, dec_layers=2, residual=True).eval()
    src = torch.tensor([[5, 6, 7], [8, 9, 0]])
    src_len = torch.tensor([3, 2])
    tgt = torch.tensor([[2, 5, 6], [2, 8, 9]])
    logits = m(src, src_len, tgt)
    assert logits.shape == (2, 3, 12)
    state = m.encode(src, src_len)
    for t in range(3):
        step, state = m.decode_step(tgt[:, t], state)
        torch.testing.assert_close(step, logits[:, t], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_row(cell):
    """Rows are encoded in equal-length groups: padding never reaches the backward direction."""
    m = tiny_model(cell, bidirectional=True).eval()
    alone = m.encode(torch.tensor([[8, 9]]), torch.tensor([2]))
    batch = m.encode(torch.tensor([[5, 6, 7, 4], [8, 9, 0, 0]]), torch.tensor([4, 2]))
    torch.testing.assert_close(batch.h[:, 1], alone.h[:, 0], atol=1e-6, rtol=1e-6)


def test_init_orthogonal_and_forget_bias():
    m = tiny_model("lstm", forget_bias=1.0)
    w = m.decoder.layers[0].weight_hh_l0[:32]          # input gate block: orthogonal
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)
    b = m.decoder.layers[0].bias_ih_l0
    assert torch.all(b[32:64] == 1.0) and torch.all(b[:32] == 0)


@pytest.mark.parametrize("cls", [LSTM, GRU])
@pytest.mark.parametrize("bi", [False, True])
def test_hand_written_recurrence_matches_torch(cls, bi, monkeypatch):
    """The bf16 path's loop computes exactly what nn.LSTM/nn.GRU compute (checked in fp32)."""
    import shared.rnn as rnn
    torch.manual_seed(0)
    layer = cls(6, 5, batch_first=True, bidirectional=bi)
    x = torch.randn(3, 4, 6)
    h0 = torch.randn(2 if bi else 1, 3, 5)
    hx = (h0, torch.randn_like(h0)) if cls is LSTM else h0
    ref_out, ref_state = layer(x, hx)
    monkeypatch.setattr(rnn, "_autocast_on", lambda: True)
    monkeypatch.setattr(rnn, "native_bf16", lambda cell: False)   # the loop, not oneDNN
    out, state = layer(x, hx)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    for a, b in zip(torch.utils._pytree.tree_leaves(state), torch.utils._pytree.tree_leaves(ref_state)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bi", [False, True])
def test_native_bf16_kernel_is_close_to_fp32(cell, bi):
    """Where oneDNN builds its bf16 RNN (AMX CPUs), the layers call it: outputs, states and
    gradients agree with fp32 to bf16 rounding."""
    import shared.rnn as rnn
    if not rnn.native_bf16(cell):
        pytest.skip("no native bf16 RNN kernel on this CPU")
    torch.manual_seed(0)
    layer = (LSTM if cell == "lstm" else GRU)(24, 16, batch_first=True, bidirectional=bi)
    x = torch.randn(3, 5, 24, requires_grad=True)
    runs = []
    for on in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
            out, _ = layer(x)
        assert out.dtype == (torch.bfloat16 if on else torch.float32)
        out.float().pow(2).sum().backward()
        runs.append((out.detach().float(), x.grad.clone(), layer.weight_hh_l0.grad.clone()))
        x.grad = None
        layer.zero_grad(set_to_none=True)
    for a, b in zip(*runs):
        assert float((a - b).norm() / a.norm()) < 0.02


def test_bf16_autocast_forward_backward(cell):
    m = tiny_model(cell)
    src, src_len = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, n = m(src, src_len, torch.tensor([[2, 5, 6]]), torch.tensor([[5, 6, 3]]))
    loss.backward()
    assert torch.isfinite(loss) and int(n) == 3
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_hand_lstm_recurrence_gradcheck():
    from shared.rnn import LSTMRecurrence
    torch.manual_seed(0)
    B, T, H = 2, 4, 3
    args = [torch.randn(*s, dtype=torch.double, requires_grad=True)
            for s in ((B, T, 4 * H), (B, H), (B, H), (4 * H, H))]
    assert torch.autograd.gradcheck(lambda *a: LSTMRecurrence.apply(*a, torch.double), args)


def _static_runs(hidden: int, steps: int, runs: list) -> list[list[torch.Tensor]]:
    """Output, final states and every gradient (fp32 copies) of one LSTM layer with a static
    input, once for each callable in `runs` (run(layer, x, s, hx) -> (out, (h, c))): the same
    layer, inputs and loss each time."""
    torch.manual_seed(0)
    layer = LSTM(6 + 5, hidden, batch_first=True)
    x, s = torch.randn(3, steps, 6, requires_grad=True), torch.randn(3, 5, requires_grad=True)
    hx = (torch.randn(1, 3, hidden), torch.randn(1, 3, hidden))
    results = []
    for run in runs:
        out, (h, c) = run(layer, x, s, hx)
        (out.float().pow(2).sum() + h.float().sum() + c.float().sum()).backward()
        results.append([t.detach().float().clone() for t in
                        [out, h, c, x.grad, s.grad] + [p.grad for p in layer.parameters()]])
        x.grad = s.grad = None
        layer.zero_grad(set_to_none=True)
    return results


def test_static_input_equals_concatenating_it_at_every_step():
    """The decoder's summary input taken apart (fp32 hand recurrence) computes what nn.LSTM
    computes on [x_t ; summary], forward and backward."""
    def concatenated(layer, x, s, hx):
        steps = x.size(1)
        return torch.nn.LSTM.forward(layer, torch.cat([x, s.unsqueeze(1).expand(-1, steps, -1)],
                                                      -1), hx)
    static, concat = _static_runs(7, 4, [lambda layer, x, s, hx: layer(x, hx, s), concatenated])
    for a, b in zip(static, concat):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_static_input_under_bf16_autocast_matches_fp32():
    """Under autocast the layer with a static input runs the hand recurrence with bf16
    products (fp32 gates and cell): output, states and gradients agree with fp32 within bf16
    rounding."""
    def run(bf16):
        def go(layer, x, s, hx):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out, state = layer(x, hx, s)
            assert out.dtype == (torch.bfloat16 if bf16 else torch.float32)
            return out, state
        return go
    fp32, bf16 = _static_runs(16, 9, [run(False), run(True)])
    for a, b in zip(fp32, bf16):
        assert float((a - b).norm() / a.norm()) < 0.02


@pytest.mark.parametrize("bf16", [False, True])
def test_fused_projection_loss_equals_linear_and_cross_entropy(bf16):
    """LinearCrossEntropy (chunks of rows, gradients made in the forward pass) gives the loss
    and gradients of linear + cross_entropy: equal in fp32, within bf16 rounding under
    autocast; under no_grad it computes the loss alone."""
    from shared.model import LinearCrossEntropy
    torch.manual_seed(0)
    n = LinearCrossEntropy.CHUNK + 37                  # a full chunk and a partial one
    x0, w0, b0 = torch.randn(n, 16), torch.randn(50, 16) * 0.3, torch.randn(50) * 0.1
    target = torch.randint(0, 50, (n,))
    runs = []
    for fused in (False, True):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            h = x.bfloat16() if bf16 else x                  # as out_proj gives it
            if fused:
                loss = LinearCrossEntropy.apply(h, w, b, target, True)
            else:
                loss = F.cross_entropy(F.linear(h, w, b).float(), target, reduction="sum")
        (loss / n).backward()
        runs.append([loss.detach(), x.grad, w.grad, b.grad])
    tol = 0.01 if bf16 else 1e-5
    for a, b in zip(*runs):
        assert float((a - b).norm() / a.norm()) < tol
    if not bf16:                 # told no gradient will flow (no_grad), it makes none

        class Ctx:
            needs_input_grad = (True,) * 5

            def save_for_backward(self, *saved):
                self.saved = saved

        ctx = Ctx()
        loss = LinearCrossEntropy.forward(ctx, x0, w0, b0, target, False)
        assert ctx.saved == (None, None, None) and torch.allclose(loss, runs[0][0], rtol=tol)


def test_probing_the_bf16_kernel_draws_no_random_numbers():
    """native_bf16 builds a layer and input of its own: it must not move the global generator
    (a resumed run probes inside its first step, an unbroken one did before it)."""
    from shared import rnn
    rnn._NATIVE.pop("lstm", None)
    torch.manual_seed(0)
    rnn.native_bf16("lstm")
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))
