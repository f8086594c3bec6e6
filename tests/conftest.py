import gzip
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# One intra-op thread per test process: two cores, and oversubscribed OpenMP threads
# spin-wait each other to a crawl when a background job shares the machine.
torch.set_num_threads(1)


@pytest.fixture(params=["lstm", "gru"])
def cell(request):
    return request.param


@pytest.fixture(scope="session")
def poem_model_dir(tmp_path_factory):
    """A tiny untrained poem model exported like the real one: the rules guarantee the form
    whatever the model's quality, so writer, CLI, batch and app behaviour can be tested fast."""
    from poetry.poem_train import FORM_TOKENS, default_model_config
    from shared.checkpoint import export_model
    from shared.config import apply_overrides
    from shared.model import Seq2Seq
    from shared.tokenizers import CharTokenizer
    chars = (ROOT / "tests" / "fixtures" / "poems" / "chars.txt").read_text(encoding="utf-8")
    extra = "春夏秋冬白日依山尽黄河入海流明月思江送别，。"
    tok = CharTokenizer.train([chars.replace("\n", "") + extra], specials=FORM_TOKENS)
    cfg = apply_overrides(default_model_config(tok.vocab_size),
                          ["emb_dim=16", "hidden=32", "dec_layers=1"])
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("poem_model")
    export_model(d, Seq2Seq(cfg), tok, {"rebuild": "tests/conftest.py"})
    with gzip.open(d / "lines.txt.gz", "wt", encoding="utf-8") as f:
        f.write("白日依山尽\n黄河入海流\n")
    return d
