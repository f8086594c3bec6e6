import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Two cores: one intra-op thread per test process avoids oversubscription with xdist-free runs
# that share the machine with background jobs.
torch.set_num_threads(1)


@pytest.fixture(params=["lstm", "gru"])
def cell(request):
    return request.param
