"""Rendering a tune: MIDI, WAV and SVG, offline."""
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from poetry.tunes import abc, render

TUNE = abc.build_tune("6/8", "Dmaj", "jig", "|:A|dcdede|f2dA2F|GFGABc|d3d2:|", 1)


def test_midi():
    midi = render.to_midi(TUNE)
    assert midi[:4] == b"MThd" and len(midi) > 100
    notes = render._notes(midi)
    assert len(notes) >= 20 and {p for _, _, p, _ in notes} >= {69, 74}     # A4, D5


def test_wav():
    sr, samples = render.to_wav(TUNE)
    assert sr == 22050 and samples.dtype == np.int16 and samples.ndim == 1
    assert len(samples) > sr and np.abs(samples).max() > 1000
    with wave.open(io.BytesIO(render.wav_bytes(sr, samples))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)


def test_svg():
    svg = render.to_svg(TUNE)
    assert svg.lstrip().startswith(("<svg", "<?xml")) and "</svg>" in svg
    assert svg.count('class="measure') >= 4


def test_render_all(tmp_path):
    paths = render.render_all(TUNE, tmp_path, "tune1")
    assert sorted(paths) == ["abc", "mid", "svg", "wav"]
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    assert paths["abc"].read_text() == TUNE


def test_bad_input():
    with pytest.raises(ValueError):
        render.to_svg("no tune here")
    with pytest.raises(ValueError):
        render.to_midi("")


def test_benchmark_runs():
    result = render.benchmark(repeats=1)
    assert result["render_seconds_median"] > 0


def test_tempo_and_fit_width():
    from poetry.tunes.render import _notes, fit_width, to_midi, to_svg, with_tempo
    tune = "X:1\nT:t\nM:2/4\nL:1/8\nQ:1/4=200\nK:D\nABcd|efga|]\n"
    slow = with_tempo(tune, 60)
    assert slow.count("Q:") == 1 and "Q:1/4=60\nK:D" in slow
    assert _notes(to_midi(slow))[-1][1] > 2.5 * _notes(to_midi(with_tempo(tune, 180)))[-1][1]
    for bad in (0, 1000, 90.5, "fast", True):
        with pytest.raises(ValueError, match="tempo"):
            with_tempo(tune, bad)
    svg = fit_width(to_svg(slow))
    assert svg.startswith("<svg viewBox=") and 'style="width:100%;height:auto"' in svg
    assert fit_width("<svg>x</svg>") == "<svg>x</svg>"


@pytest.mark.parametrize("abc", ["X:\nK:\n", "X:\nK:D\nabc|\n", "X:1\nK:\nabc|\n", "K:D\nabc\n"])
def test_headers_verovio_cannot_take_are_refused(abc, tmp_path):
    """An empty X: or K: field used to crash the process inside verovio (exit 139)."""
    import subprocess
    import sys
    f = tmp_path / "t.abc"
    f.write_text(abc, encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "poetry.tunes.render", str(f), "--out-dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 2 and p.stderr.startswith("error: not an ABC tune"), p.stderr
