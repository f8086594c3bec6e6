"""Render an ABC tune as sheet music (SVG), MIDI and WAV audio, offline.

verovio reads ABC directly and writes both the engraved SVG and a MIDI file (repeats played out,
quarter = 120 unless the tune has a Q: field), from one load: ~30 ms for a 16-bar tune, where
music21 needs ~120 ms for the MIDI alone. The audio is a plain additive synthesiser in numpy (a
few harmonics under a plucked envelope), 22050 Hz mono 16-bit: no soundfont, no network.

    python -m poetry.tunes.render TUNE.abc [--out-dir DIR]    # writes .abc .mid .wav .svg
    python -m poetry.tunes.render --bench                     # times ABC -> SVG + MIDI + WAV
"""
from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import threading
import time
import warnings
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050
_HARMONICS = (1.0, 0.45, 0.25, 0.12, 0.06)     # a soft reed-like timbre
_LOCK = threading.Lock()                       # one verovio toolkit, not thread-safe
_TK = None
_OPTIONS = {"inputFrom": "abc", "adjustPageHeight": True, "pageHeight": 60000,
            "pageWidth": 2100, "scale": 40, "header": "none", "footer": "none",
            "breaks": "auto"}


def _toolkit():
    global _TK
    if _TK is None:
        import verovio
        verovio.enableLog(verovio.LOG_OFF) if hasattr(verovio, "enableLog") else None
        _TK = verovio.toolkit()
        _TK.setOptions(_OPTIONS)
    return _TK


def _load(abc: str):
    """Load the tune into the shared toolkit; the caller holds _LOCK."""
    fields = dict(re.findall(r"(?m)^([XK]):(.*)$", abc)[::-1])    # the first X: and K: lines
    if "X" not in fields or "K" not in fields:
        raise ValueError("not an ABC tune: it needs X: and K: header lines")
    if not fields["X"].strip().isdigit() or not fields["K"].strip():
        # (verovio crashes the process on an empty X: or K: field)
        raise ValueError("not an ABC tune: X: needs the tune's number and K: its key, "
                         "e.g. X:1 and K:D")
    tk = _toolkit()
    if not tk.loadData(abc) or tk.getPageCount() < 1:
        raise ValueError("verovio could not read the ABC tune")
    return tk


def to_svg(abc: str) -> str:
    """Engraved score as one SVG page."""
    with _LOCK:
        return _load(abc).renderToSVG(1)


def fit_width(svg: str) -> str:
    """The score scaled to its container's width, aspect kept (verovio writes a fixed pixel
    size, which overflowed a narrow column and cut the last bars off)."""
    m = re.match(r'<svg width="([\d.]+)px" height="([\d.]+)px"', svg)
    if not m:
        return svg
    w, h = m.groups()
    return svg.replace(m.group(0), f'<svg viewBox="0 0 {w} {h}" '
                                   f'style="width:100%;height:auto"', 1)


TEMPO = (40, 240)          # quarter notes a minute the app and CLI accept


def with_tempo(abc: str, qpm: int) -> str:
    """The tune with a Q:1/4=qpm field before K: (replacing any), so MIDI and audio play at
    that tempo. ValueError outside TEMPO."""
    if not isinstance(qpm, int) or isinstance(qpm, bool) or not TEMPO[0] <= qpm <= TEMPO[1]:
        raise ValueError(f"tempo must be a whole number of quarter notes a minute from "
                         f"{TEMPO[0]} to {TEMPO[1]}, got {qpm!r}")
    lines = [x for x in abc.splitlines() if not x.startswith("Q:")]
    k = next((i for i, x in enumerate(lines) if x.startswith("K:")), len(lines))
    return "\n".join(lines[:k] + [f"Q:1/4={qpm}"] + lines[k:]) + ("\n" if abc.endswith("\n")
                                                                  else "")


def svg_and_midi(abc: str) -> tuple[str, bytes]:
    """The engraved score (one SVG page) and the MIDI file, from one verovio load."""
    with _LOCK:
        tk = _load(abc)
        return tk.renderToSVG(1), base64.b64decode(tk.renderToMIDI())


def to_midi(abc: str) -> bytes:
    """A standard MIDI file of the tune (repeats played out)."""
    with _LOCK:
        return base64.b64decode(_load(abc).renderToMIDI())


def _notes(midi: bytes) -> list[tuple[float, float, int, int]]:
    """(start s, end s, pitch, velocity) of every note in a MIDI file."""
    import pretty_midi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # verovio puts tempo on track 1: harmless
        pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
    return [(n.start, n.end, n.pitch, n.velocity)
            for inst in pm.instruments if not inst.is_drum for n in inst.notes]


def synthesize(notes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Additive synthesis: each note is a few harmonics under a plucked envelope
    (5 ms attack, exponential decay, 40 ms release). Returns int16 mono samples."""
    end = max((e for _, e, _, _ in notes), default=0.0) + 0.3
    out = np.zeros(int(end * sample_rate) + 1, dtype=np.float32)
    for start, stop, pitch, velocity in notes:
        n = int((stop - start + 0.04) * sample_rate)
        t = np.arange(n, dtype=np.float32) / sample_rate
        freq = 440.0 * 2 ** ((pitch - 69) / 12)
        wave_ = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t)
                    for k, a in enumerate(_HARMONICS) if freq * (k + 1) < sample_rate / 2)
        env = np.minimum(t / 0.005, 1.0) * np.exp(-2.5 * t)
        release = np.clip((stop - start + 0.04 - t) / 0.04, 0.0, 1.0)
        i = int(start * sample_rate)
        out[i:i + n] += (velocity / 127) * wave_ * env * release
    peak = float(np.abs(out).max()) if out.size else 0.0
    scale = 0.8 * 32767 / peak if peak > 0 else 0.0
    return (out * scale).astype(np.int16)


def midi_to_wav(midi: bytes, sample_rate: int = SAMPLE_RATE) -> tuple[int, np.ndarray]:
    """(sample_rate, int16 mono samples) of a MIDI file — the form gr.Audio takes."""
    return sample_rate, synthesize(_notes(midi), sample_rate)


def to_wav(abc: str, sample_rate: int = SAMPLE_RATE) -> tuple[int, np.ndarray]:
    """(sample_rate, int16 mono samples) — the form gr.Audio takes."""
    return midi_to_wav(to_midi(abc), sample_rate)


def wav_bytes(sample_rate: int, samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, sample_rate: int, samples: np.ndarray) -> None:
    Path(path).write_bytes(wav_bytes(sample_rate, samples))


def render_all(abc: str, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write STEM.abc, .mid, .wav and .svg into out_dir (one verovio load); returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    svg, midi = svg_and_midi(abc)
    paths = {ext: out / f"{stem}.{ext}" for ext in ("abc", "mid", "wav", "svg")}
    paths["abc"].write_text(abc, encoding="utf-8")
    paths["mid"].write_bytes(midi)
    write_wav(paths["wav"], *midi_to_wav(midi))
    paths["svg"].write_text(svg, encoding="utf-8")
    return paths


BENCH_TUNE = """X:1
T:Untitled 1
M:6/8
L:1/8
R:jig
K:Dmaj
|:A|dcd ede|f2d A2F|GFG ABc|d3 d2A|dcd ede|f2d A2F|G2B AGF|E3 E2:|
|:e|f2f fed|e2e edc|d2d dcB|A3 A2G|FGA Bcd|e2f g2e|fdB AGF|[1 E3 E2:|[2 D3 D2|]
"""


def benchmark(abc: str = BENCH_TUNE, repeats: int = 5) -> dict[str, float]:
    """Median seconds for ABC -> SVG + MIDI + WAV files (a 16-bar jig by default)."""
    import tempfile
    render_all(abc, tempfile.gettempdir(), "shiyu-bench-warmup")
    times = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(repeats):
            t0 = time.perf_counter()
            render_all(abc, d, f"t{i}")
            times.append(time.perf_counter() - t0)
    return {"render_seconds_median": round(sorted(times)[len(times) // 2], 4),
            "render_seconds_max": round(max(times), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m poetry.tunes.render", description=__doc__.split("\n")[0])
    ap.add_argument("abc", nargs="?", type=Path, help="an .abc file")
    ap.add_argument("--out-dir", type=Path, default=Path("."))
    ap.add_argument("--bench", action="store_true", help="time the rendering of a 16-bar tune")
    args = ap.parse_args(argv)
    if args.bench or args.abc is None:
        print(benchmark())
        return 0
    try:
        paths = render_all(args.abc.read_text(encoding="utf-8"), args.out_dir, args.abc.stem)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
