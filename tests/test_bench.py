"""The benchmark's measuring code runs (its figures are printed by `python -m shared.bench`)."""
from shared.bench import (flops_per_token, matmul_gflops, run_naive, run_trainer,
                          torch_rnn_under_autocast)
from tests.helpers import copy_pairs, tiny_model


def test_bench_pieces_run_on_a_tiny_model():
    pairs = copy_pairs(200, seed=0)
    model = tiny_model("lstm")
    assert run_naive(model, pairs, 8) > 0
    assert run_trainer(model, pairs, steps=2, bf16=False, budget_s=30) > 0
    assert run_trainer(model, pairs, steps=1, bf16=True, budget_s=30) > 0
    assert flops_per_token(model.cfg) > 6 * model.cfg.hidden * model.cfg.tgt_vocab
    assert matmul_gflops(__import__("torch").float32, n=64, seconds=0.05) > 0
    assert torch_rnn_under_autocast("gru").startswith(("runs", "fails"))
