"""The tune critic: real tunes against the model's own, for the writer's ranking.

    python -m poetry.tunes.critic samples [--data cache/tunes] [--samples cache/tune-critic]
                                          [--n 3000]
    python -m poetry.tunes.critic train   [--samples cache/tune-critic] [--model data/models/tune]

`samples` takes real tunes from each split of the prepared corpus and, for each one, writes the
model's own tune on that tune's meter, key and rhythm with the writer's default request (its
rhythm's form, the rules and the phrase rules on, one candidate, no critic), so that both sides
share settings; `samples.jsonl` holds {split, label (1 real, 0 generated), meter, mode, rhythm,
body} with bodies in C of their mode, as the model writes them. `train` fits the core's critic
(shared/critic.py) on the setting tokens and the body, starting from the generator's
embeddings, reports its accuracy on each split (the test split held out), and writes
critic.safetensors and critic.json beside the model.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from shared import critic as core

from . import data as tune_data
from .format import source_text

OUT = Path("cache/tune-critic")
SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}
MAX_LEN = 400             # ids the critic reads: the setting and the body, its end kept


def encode(tok, row: dict) -> list[int]:
    """What the critic reads: the setting tokens, then the body (in C of its mode)."""
    return tok.encode(source_text(row["meter"], row["mode"], row["rhythm"])) + \
        tok.encode(row["body"])


def samples(writer, data: Path, out: Path, n: int, seed: int = 0, batch: int = 100,
            log=print) -> Path:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samples.jsonl"
    done = path.read_text(encoding="utf-8").count("\n") if path.exists() else 0
    picks = []
    for split, share in SHARES.items():
        real = tune_data.load_split(split, data)
        rng.shuffle(real)
        picks += [(split, t) for t in real[:int(n * share)]]
    t0 = time.time()
    with open(path, "a", encoding="utf-8") as f:
        for k in range(done // 2, len(picks), batch):
            jobs, kept = [], []
            for i, (split, t) in enumerate(picks[k:k + batch], k):
                try:
                    req = writer.request(t["meter"], t["key"], t["rhythm"])
                except ValueError:
                    continue
                jobs.append((req, 1, seed * 100_000 + i))
                kept.append((split, t, req))
            for (split, t, req), res in zip(kept, writer.generate(jobs)):
                for label, body in ((1, t["body"]), (0, res[0]["home"])):
                    f.write(json.dumps({"split": split, "label": label, "meter": t["meter"],
                                        "mode": t["mode"], "rhythm": req.rhythm,
                                        "body": body}) + "\n")
            f.flush()
            log(f"{min(k + batch, len(picks))}/{len(picks)} pairs ({time.time() - t0:.0f} s)")
    return path


def train(model_dir: Path, samples_dir: Path, epochs: int, out: Path | None = None,
          log=print) -> dict:
    about = {"task": "tune", "pairs": "real tunes of the prepared corpus against the model's "
             "own tunes on the same meter, key and rhythm (default request, no critic); splits "
             "as the corpus's"}
    return core.train_on_samples(model_dir, samples_dir / "samples.jsonl", encode, about,
                                 epochs, max_len=MAX_LEN, out=out, log=log)


def main(argv=None) -> int:
    from .writer import TuneWriter
    return core.main_for(argv, prog="python -m poetry.tunes.critic", doc=__doc__, writer=TuneWriter,
                         data=tune_data.DEFAULT_OUT, samples_dir=OUT, what="tunes", samples=samples,
                         train=train)


if __name__ == "__main__":
    from shared.cli import run_cli
    run_cli(main)
