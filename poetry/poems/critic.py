"""The poem critic: real Tang poems against the model's own, for the writer's ranking.

    python -m poetry.poems.critic samples [--data cache/poems] [--out cache/poem-critic] [--n 3000]
    python -m poetry.poems.critic train   [--samples cache/poem-critic] [--model data/models/poem]

`samples` takes real poems from each split of the prepared corpus and, for each one, writes
the model's own poem on that poem's title and form with the writer's default request (the
rules on, candidates ranked without a critic), so that both sides share themes and forms;
`samples.jsonl` holds {split, label (1 real, 0 generated), form, theme, poem}. `train` fits the
core's critic (shared/critic.py) on them, starting from the generator's character embeddings,
reports its accuracy on each split (the test split held out), and writes critic.safetensors
and critic.json beside the model.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from shared import critic as core

from . import data as poem_data
from .verse import FORMS

OUT = Path("cache/poem-critic")
SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}


def text_of(lines) -> str:
    """A poem as the writer's result holds it: 床前明月光，疑是地上霜。"""
    return "".join(x + ("，" if i % 2 == 0 else "。") for i, x in enumerate(lines))


def samples(writer, data: Path, out: Path, n: int, seed: int = 0, batch: int = 50,
            log=print) -> Path:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samples.jsonl"
    done = path.read_text(encoding="utf-8").count("\n") if path.exists() else 0
    picks = []
    for split, share in SHARES.items():
        real = [p for p in poem_data.load_split(split, data) if p["form"] in FORMS]
        rng.shuffle(real)
        picks += [(split, p) for p in real[:int(n * share)]]
    t0 = time.time()
    with open(path, "a", encoding="utf-8") as f:
        for k in range(done // 2, len(picks), batch):
            jobs, kept = [], []
            for i, (split, p) in enumerate(picks[k:k + batch], k):
                for theme in (p["title"], p["lines"][0][:2]):   # else its first two characters
                    try:
                        jobs.append((writer.request(theme, p["form"]), 1, seed * 100_000 + i))
                    except ValueError:
                        continue
                    kept.append((split, p))
                    break
            for (split, p), res in zip(kept, writer.generate(jobs)):
                theme = res[0]["theme"]
                for label, poem in ((1, text_of(p["lines"])), (0, res[0]["poem"])):
                    f.write(json.dumps({"split": split, "label": label, "form": p["form"],
                                        "theme": theme, "poem": poem},
                                       ensure_ascii=False) + "\n")
            f.flush()
            log(f"{min(k + batch, len(picks))}/{len(picks)} pairs ({time.time() - t0:.0f} s)")
    return path


def train(model_dir: Path, samples_dir: Path, epochs: int, out: Path | None = None,
          log=print) -> dict:
    about = {"task": "poem", "pairs": "real Tang poems of the prepared corpus against the "
             "model's own poems on the same titles and forms (default request, no critic); "
             "splits as the corpus's"}
    return core.train_on_samples(model_dir, samples_dir / "samples.jsonl",
                                 lambda tok, r: tok.encode(r["poem"]), about, epochs,
                                 max_len=64, out=out, log=log)


def main(argv=None) -> int:
    from .writer import PoemWriter
    return core.main_for(argv, prog="python -m poetry.poems.critic", doc=__doc__, writer=PoemWriter,
                         data=poem_data.OUT, samples_dir=OUT, what="poems", samples=samples,
                         train=train)


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
