"""The benchmark's measuring code runs (its figures are printed by `python -m shared.bench`)."""
import torch

from shared.bench import (decode_timing, flops_per_token, load_pairs, matmul_gflops, run_naive,
                          run_trainer, time_to_quality, torch_rnn_under_autocast)
from tests.helpers import copy_pairs, tiny_model


def test_bench_pieces_run_on_a_tiny_model():
    pairs = copy_pairs(200, seed=0)
    model = tiny_model("lstm")
    assert run_naive(model, pairs, 8) > 0
    assert run_trainer(model, pairs, steps=2, bf16=False, budget_s=30) > 0
    assert run_trainer(model, pairs, steps=1, bf16=True, budget_s=30) > 0
    assert flops_per_token(model.cfg) > 6 * model.cfg.hidden * model.cfg.tgt_vocab
    assert matmul_gflops(torch.float32, n=64, seconds=0.05) > 0
    assert torch_rnn_under_autocast("gru").startswith(("runs", "fails"))


def test_time_to_quality_and_decode_timing_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                         # no cache/poems: synthetic data
    assert "synthetic" in load_pairs(12, n=5)[1]
    cfg = tiny_model("lstm", dec_layers=2).cfg
    out = time_to_quality(cfg, minutes=0.03)
    assert set(out) == {"naive", "trainer_auto"} and out["trainer_auto"]["steps"] > 0
    assert out["trainer_auto"]["precision"] in ("fp32", "bf16")
    d = decode_timing(cfg, tokens=5)
    assert d == {} or 0 < d["ms_matmul"] < d["ms_per_token"]
