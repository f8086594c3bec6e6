"""Folk tunes in ABC: meter + mode + rhythm (+ opening bars) -> tune body, music tokens.

    format.py   setting tokens, rhythms and the source text (what training and generation share)
    abc.py      ABC music tokens, keys, meters, normalisation, transposition
    data.py     the corpus: music21's ABC -> cache/tunes splits     (python -m poetry.tunes.data)
    rules.py    the tune constraint: full bars, repeats, form, final tonic, length, no 4-bar
                copies; pitch rules (range, out-of-mode cap); checks
    style.py    form, final, out-of-mode notes, range of tunes; the corpus's figures per rhythm
                                                                    (python -m poetry.tunes.style)
    train.py    train and export data/models/tune                   (python -m poetry.tunes.train)
    writer.py   TuneWriter: load, write
    render.py   ABC -> SVG (verovio), MIDI, WAV                     (python -m poetry.tunes.render)
    cli.py      python -m poetry tune ...
    evaluate.py held-out loss, rules on/off, speed                  (python -m poetry.evaluate tune)
"""
from .writer import MAX_N, TuneWriter

__all__ = ["MAX_N", "TuneWriter"]
