"""Held-out evaluation of the shipped models.

    python -m poetry.evaluate poem [--json] [--poems 200] [--model DIR]

Poems: test perplexity per character (punctuation and <eos> excluded, title + form as the
source) on the Tang test and the Song test, for the model and for a modified Kneser-Ney
character n-gram fitted on the model's training poems (order tuned on validation, same
vocabulary and <unk>, same source as a history prefix); then 200 generated
poems over test-set themes and all four forms, with the rules on and off (plain sampling):
format validity, acrostic validity (every 4th request has heads), rhyme rate (平水韵, and by
新韵 beside it), novelty,
distinct-line ratio, theme-character inclusion, repetition rates (a character 3+ times, a
repeated rhyme character, doubled characters per poem), mean score, poems/s, and the
probability mass the rules removed per step; 50 `--tones strict` poems and the share that a
standard 平仄 pattern fits by the classical tones; the same repetition and rhyme rates and the
pattern share of the real test poems (Tang, and Song where prepared); the share of poems whose
seasons conflict (scenes.py), generated and real; the critic's held-out accuracy; theme relevance: the share of generated poems over
30 themes that a naive Bayes classifier trained on titled real poems puts their theme in its
top 3 (themes.py), beside the share for real test poems. Speed: p50 latency of one 七律 (batch 1) and of 100 poems in one call.
Generation runs fp16 decoder weights (shared/fp16.py): its test perplexity, scored step by step
through that decoder, and its speed are printed beside the fp32 model's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from shared.cli import run_cli
from shared.fp16 import fp32_generation
from shared.ngram import tune_order
from shared.trainer import evaluate

from . import data as poem_data
from .format import source_text
from . import repetition
from .themes import THEMES, ThemeClassifier, labels
from .verse import FORMS, check_poem, form_of, get_form, rhyme_rate, rhymes


def perplexities(writer, data_dir: Path) -> dict:
    """Test perplexity per character of the model and of a Kneser-Ney n-gram fitted on the
    same training poems as the model (the card's train_splits), on the Tang test and, where
    prepared, the Song test."""
    tok = writer.tok
    punct = {tok.stoi[p] for p in "，。" if p in tok.stoi}
    src = lambda p: tok.encode(source_text(p["form"], p["title"]))
    train = [p for s in writer.card.get("train_splits", ["train"])
             for p in poem_data.load_split(s, data_dir)]
    splits = {"train": train, "validation": poem_data.load_split("validation", data_dir)}
    tests = {s: poem_data.load_split(s, data_dir) for s in ("test", "test_song")
             if (Path(data_dir) / f"{s}.jsonl").exists()}
    unscored = punct | {tok.eos_id}
    seqs = {s: [tok.encode(p["body"]) for p in v] for s, v in splits.items()}
    prefixes = {s: [src(p) for p in v] for s, v in splits.items()}
    t0 = time.time()
    # <eos> and punctuation are never scored: the n-gram sees them only as history
    best, val = tune_order(seqs["train"], seqs["validation"], orders=(2, 3, 4),
                           vocab_size=tok.vocab_size, bos=tok.bos_id, eos=tok.eos_id,
                           train_prefixes=prefixes["train"],
                           validation_prefixes=prefixes["validation"],
                           exclude=punct | {tok.eos_id})
    from shared.ngram import KneserNey
    kn = KneserNey(best, tok.vocab_size).fit(seqs["train"], tok.bos_id, tok.eos_id,
                                             prefixes=prefixes["train"])
    out = {"train_poems": len(train), "ngram_order": best, "ngram_validation_ppl_by_order": val,
           "ngram_seconds": round(time.time() - t0, 1)}
    for name, poems in tests.items():
        pairs = [(src(p), tok.encode(p["body"])) for p in poems]
        model = evaluate(writer.model, pairs, bos=tok.bos_id, eos=tok.eos_id, exclude=unscored)
        ngram = kn.score([t for _, t in pairs], tok.bos_id, tok.eos_id, exclude=unscored,
                         prefixes=[s for s, _ in pairs])
        row = {"poems": len(pairs), "chars": model["tokens"], "model_ppl": model["ppl"],
               "ngram_ppl": ngram["ppl"], "ratio_model_to_ngram": model["ppl"] / ngram["ppl"]}
        gen = math.exp(evaluate(writer.decoder, pairs, bos=tok.bos_id, eos=tok.eos_id,
                                exclude=unscored, stepwise=True)["nll"])  # what generation runs
        row.update(generation_ppl=gen, generation_ratio_to_ngram=gen / ngram["ppl"])
        out[name] = row
    return out


def requests(test: list[dict], n: int, seed: int = 0) -> list[dict]:
    """n requests cycling through the four forms; themes alternate between test titles and
    1-2 keywords; every 4th request is an acrostic whose heads come from a test poem."""
    rng = random.Random(seed)
    forms = list(FORMS)
    out = []
    for i in range(n):
        p = test[rng.randrange(len(test))]
        form = forms[i % 4]
        theme = p["title"] if i % 2 else "".join(poem_data.keywords(p, rng, k=rng.choice([1, 2])))
        req = {"theme": theme or p["lines"][0][:2], "form": form}
        if i % 4 == 3:
            heads = "".join(x[0] for x in test[rng.randrange(len(test))]["lines"])
            req["acrostic"] = (heads * 2)[:get_form(form).lines]
        out.append(req)
    return out


def generation_metrics(writer, reqs: list[dict], rules: bool, seed: int = 1) -> dict:
    jobs = []
    for i, r in enumerate(reqs):
        jobs.append((writer.request(r["theme"], r["form"], r.get("acrostic"), rhyme=True), 1,
                     seed * 1000 + i))
    t0 = time.time()
    poems, masses = [], []
    for k in range(0, len(jobs), 50):
        out = writer.run(jobs[k:k + 50], candidates=1, rules=rules)
        poems += [p[0] for p in out.results]
        masses.append(out.removed_mass)
    removed = statistics.fmean(masses)
    dt = time.time() - t0
    valid = [not check_poem(p["lines"], p["form"], rhyme=False) for p in poems]
    acro = [p["lines"] and all(len(x) > 0 and x[0] == h for x, h in zip(p["lines"], r["acrostic"]))
            and len(p["lines"]) == len(r["acrostic"]) for p, r in zip(poems, reqs) if "acrostic" in r]
    lines = [x for p in poems for x in p["lines"]]
    novel = [not any(x in writer.lines for x in p["lines"]) for p in poems] if writer.lines else []
    theme_in = [any(c in p["poem"] for c in p["theme"]) for p in poems]
    share = lambda xs: round(sum(map(bool, xs)) / len(xs), 4) if xs else None
    return {"poems": len(poems), "format_valid": share(valid), "acrostic_valid": share(acro),
            "repetition": repetition.rates(p["lines"] for p in poems),
            "mean_score": round(statistics.fmean(p["score"] for p in poems), 4),
            "rhyme_rate": share([rhymes(p["lines"]) for p, v in zip(poems, valid) if v] +
                                [False] * valid.count(False)),
            "rhyme_rate_xinyun": share([rhymes(p["lines"], "xinyun")
                                        for p, v in zip(poems, valid) if v]
                                       + [False] * valid.count(False)),
            **({"mixed_seasons": writer.seasons.rate(p["lines"] for p in poems)}
               if writer.seasons is not None else {}),
            "novelty": share(novel), "distinct_lines": round(len(set(lines)) / max(len(lines), 1), 4),
            "theme_inclusion": share(theme_in), "poems_per_s": round(len(poems) / dt, 2),
            "rule_removed_mass_per_step": round(removed, 4) if rules else 0.0,
            "examples": [p["poem"] for p in poems[:4]]}


def strict_tones(writer, reqs: list[dict], seed: int = 3) -> dict:
    """`--tones strict` requests (rules on, the default 平水韵 and its classical tones): the
    share of poems one standard 平仄 pattern fits, checked character by character."""
    jobs = [(writer.request(r["theme"], r["form"], r.get("acrostic"), tones="strict"), 1,
             seed * 1000 + i) for i, r in enumerate(reqs)]
    poems = [p[0] for k in range(0, len(jobs), 50) for p in writer.generate(jobs[k:k + 50])]
    ok = [not check_poem(p["lines"], p["form"], tones="strict") for p in poems]
    return {"poems": len(poems), "pattern_pass": round(sum(ok) / max(len(ok), 1), 4),
            "examples": [p["poem"] for p in poems[:2]]}


def theme_relevance(writer, train: list[dict], test: list[dict], n: int, seed: int = 2) -> dict:
    """The theme classifier (themes.py, trained on the training poems' titled themes): share of
    generated poems whose theme is in its top 3 — n poems over the 30 themes and four forms,
    the writer's default request (rules on, 3 candidates re-ranked) — beside the same share for
    the real test poems whose titles name a theme."""
    clf = ThemeClassifier(train)
    names, forms = list(THEMES), list(FORMS)
    jobs = [(writer.request(names[i % len(names)], forms[(i // len(names)) % 4]), 1,
             seed * 1000 + i) for i in range(n)]
    poems = []
    for k in range(0, len(jobs), 25):
        poems += [p[0] for p in writer.generate(jobs[k:k + 25])]
    real = [(p["body"], labels(p["title"])) for p in test if labels(p["title"])]
    return {"poems": len(poems), "generated_top3": clf.hit_rate(
                [(p["poem"], [p["theme"]]) for p in poems]),
            "real_test_top3": clf.hit_rate(real), "real_test_poems": len(real),
            "generated_repetition": repetition.rates(p["lines"] for p in poems),
            **({"generated_mixed_seasons": writer.seasons.rate(p["lines"] for p in poems)}
               if writer.seasons is not None else {}),
            "examples": [p["poem"] for p in poems[:6]]}


def real_rates(data_dir: Path, seasons=None) -> dict:
    """The repetition rates and rhyme rate of held-out real poems, for comparison (and how
    often their seasons conflict, by `seasons`)."""
    out = {}
    for split in ("test", "test_song"):
        path = Path(data_dir) / f"{split}.jsonl"
        if path.exists():
            lines = [p["lines"] for p in poem_data.load_split(split, data_dir)]
            out[split] = {**repetition.rates(lines), "rhyme_rate": round(rhyme_rate(lines), 4),
                          "rhyme_rate_xinyun": round(rhyme_rate(lines, "xinyun"), 4),
                          "strict_pattern_pass": round(statistics.fmean(
                              not check_poem(x, form_of(x), rhyme=False, tones="strict")
                              for x in lines), 4),
                          **({"mixed_seasons": seasons.rate(lines)} if seasons else {})}
    return out


def speed(writer, runs: int = 21) -> dict:
    """p50 of one 七律 (batch 1, first call dropped): one sample, and the default request (3
    candidates decoded together, the best kept); 100 绝句 in one call. With the writer's
    generation decoder (the precision the report's "generation" names) and the fp32 model for
    comparison."""
    def p50_ms(candidates: int) -> float:
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            writer.write("春望", form="qilv", seed=i, candidates=candidates)
            times.append(time.perf_counter() - t0)
        return round(1000 * statistics.median(times[1:]), 1)

    def measure() -> dict:
        out = {"qilv_p50_ms_batch1": p50_ms(1), "qilv_p50_ms_3_candidates": p50_ms(3)}
        t0 = time.perf_counter()
        writer.generate([(writer.request(t, "qijue"), 1, i) for i, t in
                         enumerate(["明月", "秋思", "江南", "送别"] * 25)], candidates=1)
        return {**out, "poems100_one_call_s": round(time.perf_counter() - t0, 2)}

    out = measure()
    if writer.decoder is not writer.model:
        with fp32_generation(writer):
            out["fp32"] = measure()
    return out


# Run in a tree of either layout (this one, or an older one whose poetry/poems.py module takes
# jobs as (theme, spec, n, seed)): the default request for one 七律 (p50 of 20 after a warm-up)
# and for 100 七绝 in one call (p50 of 5), each with the tree's own shipped model.
_SPEED = r"""
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
try:
    from poetry.poems.writer import PoemWriter
    new = True
except ImportError:
    from poetry.poems import PoemWriter
    new = False
w = PoemWriter.load()
def timed(f, runs):
    out = []
    for i in range(runs):
        t0 = time.perf_counter(); f(i); out.append(time.perf_counter() - t0)
    return out
qilv = timed(lambda i: w.write("春望", form="qilv", seed=i), 21)[1:]
themes = ["明月", "秋思", "江南", "送别"] * 25
jobs = ([(w.request(t, "qijue"), 1, i) for i, t in enumerate(themes)] if new else
        [(t, w.request(t, "qijue")[1], 1, i) for i, t in enumerate(themes)])
many = timed(lambda i: w.generate(jobs), 5)
print(json.dumps({"qilv_default_ms": round(1000 * statistics.median(qilv), 1),
                  "qijue100_default_s": round(statistics.median(many), 3)}))
"""


def speed_against(release: Path, rounds: int = 3) -> dict:
    """The default request's speed here and in `release` (a worktree of another release),
    run alternately `rounds` times in fresh processes with the same threads; p50 of the
    rounds and the ratio this tree / release."""
    trees = {"this": Path(__file__).resolve().parents[2], "release": Path(release).resolve()}
    if not (trees["release"] / "poetry").is_dir():
        raise ValueError(f"{release} is not a checkout of this project (no poetry/ there)")
    runs: dict[str, list] = {k: [] for k in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, "-c", _SPEED, str(torch.get_num_threads())],
                                 cwd=tree, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(tree)})
            if out.returncode:
                raise ValueError(f"the speed run in {tree} failed: {out.stderr.strip()[-500:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    p50 = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in runs.items()}
    return {"release": str(release), "rounds": runs, "p50": p50,
            "ratio_this_to_release": {k: round(p50["this"][k] / p50["release"][k], 3)
                                      for k in p50["this"]}}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--poems", type=int, default=200)
    ap.add_argument("--relevance-poems", type=int, default=600,
                    help="poems for the theme relevance (20 per theme by default)")
    ap.add_argument("--model", help="model folder (default data/models/poem)")
    ap.add_argument("--data", default=str(poem_data.OUT))
    ap.add_argument("--skip-ngram", action="store_true", help="skip the perplexity comparison")
    ap.add_argument("--against", metavar="TREE",
                    help="also time the default request against the release checked out in "
                         "TREE (git worktree add TREE <release>), alternately, in one run")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the speed figures (with --against: only the comparison)")


def run(args) -> int:
    from .writer import PoemWriter
    if args.speed_only and args.against:          # only the two trees' own shipped models
        print(json.dumps({"task": "poem", "threads": torch.get_num_threads(),
                          "speed_against_release": speed_against(Path(args.against))},
                         ensure_ascii=False, indent=None if args.json else 1))
        return 0
    writer = PoemWriter.load(args.model)
    test = poem_data.load_split("test", Path(args.data))
    reqs = requests(test, args.poems)
    report = {"task": "poem", "model": str(args.model or PoemWriter.default_dir()),
              "threads": torch.get_num_threads(), "generation": writer.precision}
    if not args.speed_only:
        if not args.skip_ngram:
            report["perplexity"] = perplexities(writer, Path(args.data))
        report["rules_on"] = generation_metrics(writer, reqs, rules=True)
        report["rules_off"] = generation_metrics(writer, reqs, rules=False)
        report["strict_tones"] = strict_tones(writer, reqs[:max(len(reqs) // 4, 1)])
        report["real"] = real_rates(Path(args.data), writer.seasons)
        if writer.critic is not None:
            card = json.loads((Path(args.model or PoemWriter.default_dir()) / "critic.json")
                              .read_text(encoding="utf-8"))
            report["critic"] = {"weight": writer.critic_weight,
                                "candidates": writer.CANDIDATES, **card["accuracy"],
                                "texts": card["texts"]}
        report["theme_relevance"] = theme_relevance(
            writer, poem_data.load_split("train", Path(args.data)), test, args.relevance_poems)
    report["speed"] = speed(writer)
    if args.against:
        report["speed_against_release"] = speed_against(Path(args.against))
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 1))
    if getattr(args, "report", None):
        from shared.report import write
        write(report, args.command, args.report)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.poems.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run(ap.parse_args(argv))

if __name__ == "__main__":
    run_cli(main)
