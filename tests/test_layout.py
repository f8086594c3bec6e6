"""The package layout's promises: generation never loads training or data preparation."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what serving imports, grouped by process (each group in a fresh interpreter)
SERVING = ["chatbot.bot, chatbot.cli", "poetry.poems.writer, poetry.tunes.writer, poetry.cli",
           "app"]
TASKS = ("chatbot", "poetry.poems", "poetry.tunes")


@pytest.mark.parametrize("modules", SERVING)
def test_serving_imports_no_training_or_data_module(modules):
    code = (f"import json, sys; import {modules}; "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    loaded = set(json.loads(out))
    banned = {f"{t}.{part}" for t in TASKS for part in ("train", "data", "evaluate")}
    banned |= {"shared.trainer", "shared.runs", "shared.data", "datasets"}
    assert not loaded & banned, f"{modules} load {sorted(loaded & banned)}"


def test_every_task_package_has_the_same_files():
    for package in ("chatbot", "poetry/poems", "poetry/tunes"):
        names = {p.stem for p in (ROOT / package).glob("*.py")}
        assert {"format", "data", "train", "cli", "evaluate"} <= names, package
        assert names & {"writer", "bot"}, package
