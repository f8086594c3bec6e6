"""Held-out evaluation of the shipped tune model.

    python -m poetry.tunes.evaluate [--json] [--tunes 200] [--model DIR] [--data cache/tunes]
    (to be wired as `python -m poetry.evaluate tune`)

* Test loss: mean NLL in nats per target token (<eos> included) of the test split, sources from
  each tune's settings, beside folk-rnn's ≈ 1.21 nats/token validation loss. Not comparable
  one to one: folk-rnn's data (thesession.org, 23.6 k tunes) and 137 tokens (separate pitch and
  duration tokens, header tokens in the sequence) differ from ours (music21's ABC corpus, mostly
  Essen songs; notes with octave and accidental as one token, durations as another).
* 200 generated tunes across all meters, modes, tonics and the rhythms each meter has, with the
  rules on and off (plain sampling at temperature 1, no other change): share that music21
  parses, share of interior bars (all but the first and the last) with the meter's exact
  duration, share that pass every tune rule, share whose header (M: L: K: R:) matches the
  request, share with a 4-bar window copied from a training tune, distinct tunes, tunes/s; and
  how folk they sound (`poetry.tunes.style`), overall and per rhythm beside the training tunes'
  figures: share of tunes asked for a form (AABB, AB) in it, share of dance tunes (style.DANCES)
  in the requested form and with repeats, share ending on the tonic, out-of-mode note rate, range, share of
  notes outside the rhythm's corpus range, bars.
* Phrases (`poetry.tunes.style.PHRASES`) of 100 jigs, reels and hornpipes of the default request
  beside the training tunes' rates and the range the rates of 100 corpus tunes fall in (99 in
  100 draws); the critic's held-out
  accuracy and weight.
* Speed: p50 seconds for one tune (batch 1, a 6/8 jig in D, its default form and free) and
  ABC -> SVG + MIDI + WAV files.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from shared.cli import run_cli
from shared.trainer import evaluate as nll_of

from . import abc
from . import data as tune_data
from . import style
from .abc import KEY_MODES, METERS, bar_length, parse_key
from .rules import check_tune, copied_windows
from .train import pairs

FOLK_RNN_NLL = 1.21
MIN_RHYTHM = 20       # a meter's rhythms with fewer training tunes are not requested
TONICS = ("D", "G", "A", "E", "C", "F", "Bb", "B")


def test_loss(writer, data_dir: Path) -> dict:
    test = tune_data.load_split("test", data_dir)
    t0 = time.time()
    m = nll_of(writer.model, pairs(test, writer.tok), bos=writer.tok.bos_id,
               eos=writer.tok.eos_id)
    return {"test_tunes": len(test), "tokens": m["tokens"], "nll_per_token": round(m["nll"], 4),
            "ppl": round(m["ppl"], 3), "folk_rnn_nll_per_token": FOLK_RNN_NLL,
            "note": "different data and tokens: folk-rnn trained on 23.6 k thesession.org tunes "
                    "with 137 tokens (pitch and duration separate); ours: music21's ABC corpus "
                    "(mostly Essen folk songs), one token per note and one per duration",
            "seconds": round(time.time() - t0, 1)}


def requests(writer, n: int) -> list[dict]:
    """n settings cycling through the meters; modes, tonics and each meter's rhythms (those
    with >= MIN_RHYTHM training tunes) vary."""
    out = []
    for i in range(n):
        meter = METERS[i % len(METERS)]
        table = writer.rhythms_by_meter.get(meter) or {"other": 1}
        rhythms = [r for r, c in table.items() if c >= MIN_RHYTHM] or list(table)
        out.append({"meter": meter,
                    "key": TONICS[(i // 3) % len(TONICS)] + KEY_MODES[(i // len(METERS)) % 4],
                    "rhythm": rhythms[(i // len(METERS)) % len(rhythms)]})
    return out


def interior_bars(body: str, meter: str) -> tuple[int, int]:
    """(interior bars with the meter's exact duration, interior bars)."""
    full = bar_length(meter)
    bs = abc.bars(abc.tokenize(body))[1:-1]
    return sum(d == full for _, d, _ in bs), len(bs)


def header_matches(tune: dict, req: dict) -> bool:
    fields, _ = abc.read_tune(tune["abc"])
    try:
        return (fields.get("M") == abc.parse_meter(req["meter"]) and fields.get("L") == "1/8"
                and parse_key(fields.get("K", "")) == parse_key(req["key"])
                and fields.get("R") == req["rhythm"] and "X" in fields and "T" in fields)
    except ValueError:
        return False


def generation_metrics(writer, reqs: list[dict], rules: bool, seed: int = 1,
                       chunk: int = 50) -> dict:
    from .data import _music21_error
    jobs = [(writer.request(r["meter"], r["key"], r["rhythm"]), 1, seed * 1000 + i)
            for i, r in enumerate(reqs)]
    t0 = time.time()
    tunes, removed = [], []
    for k in range(0, len(jobs), chunk):
        out = writer.run(jobs[k:k + chunk], rules=rules)
        tunes += [t[0] for t in out.results]
        removed.append(out.removed_mass)
    dt = time.time() - t0
    t1 = time.time()
    parsed = [_music21_error(t["abc"]) == "" for t in tunes]
    m21_seconds = time.time() - t1
    exact = [interior_bars(t["body"], t["meter"]) for t in tunes]
    valid = [not check_tune(t["home"], t["meter"]) for t in tunes]
    copies = [copied_windows(t["home"], writer.windows) > 0 for t in tunes]
    n_interior = sum(n for _, n in exact)
    bars = [len(abc.bars(abc.tokenize(t["body"]))) for t in tunes]
    share = lambda xs: round(sum(map(bool, xs)) / len(xs), 4) if xs else None
    return {**folk_metrics(tunes), "tunes": len(tunes), "music21_parses": share(parsed),
            "interior_bars_exact": round(sum(e for e, _ in exact) / max(1, n_interior), 4),
            "interior_bars": n_interior,
            "all_rules_pass": share(valid),
            "header_matches": share([header_matches(t, r) for t, r in zip(tunes, reqs)]),
            "copies_4_bars": share(copies) if writer.windows else None,
            "distinct_tunes": round(len({t["home"] for t in tunes}) / max(1, len(tunes)), 4),
            "bars_median": statistics.median(bars), "bars_max": max(bars),
            "tokens_median": statistics.median(len(abc.tokenize(t["home"])) for t in tunes),
            "tunes_per_s": round(len(tunes) / dt, 2),
            "rule_removed_mass_per_step": round(statistics.mean(removed), 4) if rules else 0.0,
            "music21_seconds": round(m21_seconds, 1),
            "examples": [t["abc"] for t in tunes[:2]]}


def folk_metrics(tunes: list[dict]) -> dict:
    """Form, final, mode and range figures of generated tunes (bodies in the requested key)."""
    figs = [style.figures(t["body"], t["meter"], parse_key(t["key"])) for t in tunes]
    formed = [(f, t) for f, t in zip(figs, tunes) if t["form"] != "free"]
    dance = [(f, t) for f, t in zip(figs, tunes) if t["rhythm"] in style.DANCES]
    share = lambda xs: round(sum(map(bool, xs)) / len(xs), 4) if xs else None
    overall = style.summary(figs)
    return {"formed_tunes": len(formed),
            "in_requested_form": share([f["form"] == t["form"] for f, t in formed]),
            "dance_tunes": len(dance),
            "dance_in_requested_form_with_repeats": share(
                [f["form"] == t["form"] and f["repeats"] for f, t in dance]),
            "ends_tonic": overall.get("ends_tonic"),
            "out_of_mode_rate": overall.get("out_of_mode_rate"),
            "notes_outside_rhythm_range": round(
                sum(not style.style_of(t["rhythm"]).low <= p <= style.style_of(t["rhythm"]).high
                    for f, t in zip(figs, tunes) for p in f["pitches"])
                / max(1, sum(f["notes"] for f in figs)), 4),
            "by_rhythm": style.by_group(figs, [t["rhythm"] for t in tunes])}


PHRASE_SETTINGS = {"jig": "6/8", "reel": "2/2", "hornpipe": "2/4"}
PHRASE_KEYS = ("Dmaj", "Gmaj", "Ador", "Emin", "Amaj", "Edor", "Dmix", "Bmin")


def phrase_figures(writer, data_dir: Path, n: int = 100, seed: int = 9000) -> dict:
    """Per dance rhythm: the `style.PHRASES` rates of n tunes of the writer's default request
    (its meter below, keys cycling), beside the training tunes' rates and the range in which
    the rates of 99 in 100 sets of n tunes drawn from them fall; `in_range` per figure."""
    train = tune_data.load_split("train", data_dir)
    out = {}
    for rhythm, meter in PHRASE_SETTINGS.items():
        corpus = [style.phrase_counts(r["body"], r["meter"]) for r in train
                  if r["rhythm"] == rhythm]
        jobs = [(writer.request(meter, PHRASE_KEYS[i % len(PHRASE_KEYS)], rhythm), 1, seed + i)
                for i in range(n)]
        tunes = [t[0] for t in writer.generate(jobs)]
        rates = style.phrase_rates([style.phrase_counts(t["home"], meter) for t in tunes])
        spread = style.phrase_range(corpus, n)
        out[rhythm] = {"meter": meter, "generated": rates, "corpus": style.phrase_rates(corpus),
                       "corpus_range": spread,
                       "in_range": {k: spread[k][0] <= rates[k] <= spread[k][1]
                                    for k in style.PHRASES if rates[k] is not None}}
    return {"figures": style.PHRASES, "by_rhythm": out,
            "all_in_range": all(all(v["in_range"].values()) for v in out.values())}


def corpus_figures(data_dir: Path, rhythms: set[str]) -> dict:
    """The same figures for the training tunes of the requested rhythms."""
    table = style.measure(tune_data.load_split("train", data_dir))["by_rhythm"]
    return {r: v for r, v in table.items() if r in rhythms}


def _one_tune_times(writer, repeats: int, form=None) -> tuple[list[float], list[int], dict]:
    times, bars, longest = [], [], None
    for i in range(repeats):
        t0 = time.perf_counter()
        (t,) = writer.write("6/8", "Dmaj", rhythm="jig", seed=i, form=form)
        times.append(time.perf_counter() - t0)
        bars.append(len(abc.bars(abc.tokenize(t["body"]))))
        longest = t if longest is None or len(t["body"]) > len(longest["body"]) else longest
    return times[1:], bars[1:], longest            # the first call warms up


def speed(writer, repeats: int = 11) -> dict:
    """One 6/8 jig in D at batch 1: in its default form (AABB), and free (up to the writer's
    length cap of MAX_BARS bars)."""
    from .render import render_all
    from .writer import MAX_BARS
    times, bars, tune = _one_tune_times(writer, repeats)
    times_free, bars_free, _ = _one_tune_times(writer, repeats, form="free")
    render = []
    with tempfile.TemporaryDirectory() as d:
        render_all(tune["abc"], d, "warmup")
        for i in range(5):
            t0 = time.perf_counter()
            render_all(tune["abc"], d, f"t{i}")
            render.append(time.perf_counter() - t0)
    return {"one_tune_p50_s": round(statistics.median(times), 3), "one_tune_form": tune["form"],
            "one_tune_bars_median": statistics.median(bars),
            "one_tune_free_p50_s": round(statistics.median(times_free), 3),
            "one_tune_free_bars_median": statistics.median(bars_free), "max_bars": MAX_BARS,
            "render_svg_midi_wav_p50_s": round(statistics.median(render), 3),
            "render_tune_bars": len(abc.bars(abc.tokenize(tune["body"]))),
            "targets": {"one_tune_s": 0.3, "render_s": 1.0}}


def evaluate(writer, n: int = 200, data_dir: Path = tune_data.DEFAULT_OUT,
             loss: bool = True, rules_off: bool = True) -> dict:
    report: dict = {"task": "tune", "threads": torch.get_num_threads()}
    if loss:
        report["test_loss"] = test_loss(writer, Path(data_dir))
    reqs = requests(writer, n)
    if (Path(data_dir) / "train.jsonl").exists():
        report["corpus_by_rhythm"] = corpus_figures(Path(data_dir), {r["rhythm"] for r in reqs})
    report["rules_on"] = generation_metrics(writer, reqs, rules=True)
    if (Path(data_dir) / "train.jsonl").exists():
        report["phrases"] = phrase_figures(writer, Path(data_dir))
    if writer.critic is not None:
        report["critic"] = {"weight": writer.critic_weight, "candidates": writer.CANDIDATES,
                            "accuracy": writer.critic.about.get("accuracy")}
    if rules_off:
        report["rules_off"] = generation_metrics(writer, reqs, rules=False)
    report["speed"] = speed(writer)
    return report


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--tunes", type=int, default=200)
    ap.add_argument("--model", help="model folder (default data/models/tune)")
    ap.add_argument("--data", default=str(tune_data.DEFAULT_OUT))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")


def run(args) -> int:
    from .writer import TuneWriter
    if args.tunes <= 0:
        raise ValueError(f"--tunes must be positive, got {args.tunes}")
    if args.threads:
        torch.set_num_threads(args.threads)
    writer = TuneWriter.load(args.model)
    report = evaluate(writer, args.tunes, Path(args.data))
    report["model"] = str(args.model or TuneWriter.default_dir())
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 1))
    if getattr(args, "report", None):
        from shared.report import write
        write(report, args.command, args.report)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.tunes.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
