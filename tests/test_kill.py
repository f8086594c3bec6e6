"""A batch killed for real (SIGKILL) and rerun gives the uninterrupted run's output: one line per
item, indexes 0..N-1 in order, no torn line, the same poems (issue 13)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 160


def command(model: Path, src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "poetry", "poem", "--input", str(src), "--output", str(out),
            "--model", str(model), "--form", "wujue", "--seed", "3"]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.mark.slow
def test_a_killed_poem_batch_resumes_to_the_same_output(poem_model_dir, tmp_path):
    src = tmp_path / "themes.txt"
    src.write_text("\n".join(["明月", "春", "秋思", "送别"] * (ITEMS // 4)) + "\n",
                   encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full.jsonl"
    subprocess.run(command(poem_model_dir, src, full), check=True, cwd=ROOT, env=env,
                   capture_output=True)
    expected = lines(full)
    assert [json.loads(x)["index"] for x in expected] == list(range(ITEMS))

    killed = 0
    out = tmp_path / "killed.jsonl"
    for target in (1, 40, 100):                       # kill once past each of these lines
        proc = subprocess.Popen(command(poem_model_dir, src, out), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and len(lines(out)) < target and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        assert len(lines(out)) < ITEMS or proc.returncode == 0
    assert killed >= 2, "the batch finished before it could be killed: give it more items"
    subprocess.run(command(poem_model_dir, src, out), check=True, cwd=ROOT, env=env,
                   capture_output=True)
    assert lines(out) == expected
