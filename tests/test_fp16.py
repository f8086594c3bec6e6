"""The fp16-weight generation decoder follows the fp32 decode step up to fp16 rounding."""
import pytest
import torch

from shared.decoding import GenerationConfig, generate, pad_batch
from shared.fp16 import Fp16Decoder, available
from shared.trainer import evaluate
from tests.helpers import BOS, EOS, copy_pairs, tiny_model

pytestmark = pytest.mark.skipif(not available(), reason="no fbgemm fp16 kernels")


@pytest.mark.parametrize("cell,tie,feed", [("lstm", True, True), ("gru", False, True),
                                           ("lstm", False, False)])
def test_step_matches_fp32(cell, tie, feed):
    model = tiny_model(cell, dec_layers=2, tie_embeddings=tie, feed_context=feed).eval()
    fast = Fp16Decoder(model)
    src, src_len = pad_batch([[4, 5, 6], [7, 8]])
    a = model.encode(src, src_len)
    b = fast.encode(src, src_len)
    tokens = torch.tensor([BOS, BOS])
    for t in (5, 9, 4):
        with torch.no_grad():
            la, a = model.decode_step(tokens, a)
        lb, b = fast.decode_step(tokens, b)
        assert (la - lb).abs().max() < 0.01 * la.abs().max()
        assert (a.h - b.h).abs().max() < 0.01
        tokens = torch.tensor([t, t])
    assert not torch.equal(la, lb)          # it really is another (rounded) computation


def test_stepwise_nll_equals_teacher_forcing_and_fp16_stays_close():
    model = tiny_model("lstm", dec_layers=2, hidden=64).eval()
    pairs = copy_pairs(60, seed=3)
    tf = evaluate(model, pairs, bos=BOS, eos=EOS)
    fp32 = evaluate(model, pairs, bos=BOS, eos=EOS, stepwise=True)
    assert fp32["nll"] == pytest.approx(tf["nll"], rel=1e-5)
    q = evaluate(Fp16Decoder(model), pairs, bos=BOS, eos=EOS, stepwise=True)
    assert q["tokens"] == fp32["tokens"]
    assert q["nll"] == pytest.approx(fp32["nll"], rel=0.005)


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_generates_through_the_common_decoder(strategy):
    """Every strategy of shared/decoding.py runs on the fp16 decoder and writes what the fp32
    model writes (the same tokens from the same seed), with scores equal up to fp16 rounding."""
    model = tiny_model("gru").eval()
    src, src_len = pad_batch([[4, 5], [6, 7, 8], [9, 10, 11, 4]])
    cfg = GenerationConfig(strategy=strategy, max_len=6, seed=1)
    with torch.no_grad():
        want = generate(model, src, src_len, cfg, bos_id=BOS, eos_id=EOS)
    got = generate(Fp16Decoder(model), src, src_len, cfg, bos_id=BOS, eos_id=EOS)
    assert got.tokens == want.tokens and any(want.tokens)
    assert got.scores == pytest.approx(want.scores, rel=0.01, abs=1e-3)


def test_a_row_does_not_depend_on_its_batch_mates():
    model = tiny_model("lstm", dec_layers=2).eval()
    fast = Fp16Decoder(model)
    src, src_len = pad_batch([[4, 5, 6]] + [[7, 8, 9, 10]] * 6)
    state = fast.encode(src, src_len)
    alone = fast.encode(src[:1, :3], src_len[:1])
    logits, _ = fast.decode_step(torch.full((7,), BOS), state)
    first, _ = fast.decode_step(torch.tensor([BOS]), alone)
    # equal up to fp32 summation order (a batch of one takes another kernel), as in fp32
    torch.testing.assert_close(logits[:1], first, rtol=1e-5, atol=1e-5)


def test_bf16_generation_flag_is_harmless():
    model = tiny_model("lstm").eval()
    src, src_len = pad_batch([[4, 5]])
    cfg = GenerationConfig(max_len=5, seed=2, bf16=True)
    out = generate(Fp16Decoder(model), src, src_len, cfg, bos_id=BOS, eos_id=EOS)
    assert len(out.tokens[0]) <= 5


def test_bf16_kind_follows_fp32_closely():
    model = tiny_model("lstm", dec_layers=2, hidden=64).eval()
    pairs = copy_pairs(40, seed=4)
    fp32 = evaluate(model, pairs, bos=BOS, eos=EOS, stepwise=True)
    q = evaluate(Fp16Decoder(model, "bf16"), pairs, bos=BOS, eos=EOS, stepwise=True)
    assert q["tokens"] == fp32["tokens"]
    assert q["nll"] == pytest.approx(fp32["nll"], rel=0.02) and q["nll"] != fp32["nll"]


def test_generation_precision_is_measured_once_and_kept(tmp_path, monkeypatch):
    """"auto" times each precision's decode step once per machine and shape; later loads read
    the choice (every process decodes alike); a damaged cache file is timed again."""
    from shared import fp16
    monkeypatch.setenv("SHIYU_CACHE", str(tmp_path))
    calls = []
    real = fp16.probe_generation
    monkeypatch.setattr(fp16, "probe_generation",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    model = tiny_model("gru").eval()
    first, rec = fp16.for_generation(model, "auto", batch=2)
    assert rec["precision"] in fp16.PRECISIONS and set(rec["probe_s"]) >= {"fp16", "fp32"}
    again, rec2 = fp16.for_generation(model, "auto", batch=2)
    assert calls == [1] and rec2 == rec and type(again) is type(first)
    (tmp_path / "generation-precision.json").write_text("{not json")
    fp16.for_generation(model, "auto", batch=2)
    assert calls == [1, 1]
    assert fp16.for_generation(model, "fp32")[0] is model
    with pytest.raises(ValueError, match="precision must be"):
        fp16.for_generation(model, "int4")


def test_the_choice_keeps_fp16_unless_another_is_clearly_faster():
    from shared.fp16 import choose_generation
    assert choose_generation({"fp16": 1.0, "bf16": 0.95, "fp32": 1.2}) == "fp16"
    assert choose_generation({"fp16": 1.0, "bf16": 0.8, "fp32": 1.2}) == "bf16"
    assert choose_generation({"fp16": 1.0, "bf16": 3.0, "fp32": 0.5}) == "fp32"
    assert choose_generation({"bf16": 0.5, "fp32": 1.0}) == "bf16"      # no fp16 kernels


def test_processes_starting_together_probe_once(tmp_path, monkeypatch):
    """Two loads at once (torchrun ranks, the app and a CLI) with no choice kept yet: the lock
    lets one probe and the other read its choice, so both decode alike."""
    import threading
    import time
    from shared import fp16
    monkeypatch.setenv("SHIYU_CACHE", str(tmp_path))
    calls = []

    def slow_probe(model, batch):
        calls.append(1)
        time.sleep(0.3)
        return {"fp16": 1.0, "bf16": 2.0, "fp32": 0.5 + 0.2 * len(calls)}
    monkeypatch.setattr(fp16, "probe_generation", slow_probe)
    model = tiny_model("lstm").eval()
    got = []
    threads = [threading.Thread(target=lambda: got.append(fp16.generation_precision(model, 3)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and got[0] == got[1] and got[0]["precision"] == "fp32"
