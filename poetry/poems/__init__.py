"""Classical Chinese poems (绝句, 律诗): theme + form -> poem, character level.

    format.py   form tokens and the source text (what training and generation share)
    verse.py    forms, rhyme books (平水韵, 中华新韵), readings, tones, 平仄 patterns, checks
    pingshui.py 平水韵 and classical tones: the table pingshui.json and how it is derived
    repetition.py  repetition in a poem: real-poem rates and the limits the rules take from them
    novelty.py  LineIndex: every Tang and Song line, hashed, for the novelty rule
    themes.py   theme classifier (evaluation) and theme associations (ranking)
    data.py     the corpus: npm chinese-poetry -> cache/poems splits  (python -m poetry.poems.data)
    rules.py    the poem constraint: lines, punctuation, acrostic, rhyme, tones, novelty, repetition
    train.py    train and export data/models/poem                     (python -m poetry.poems.train)
    writer.py   PoemWriter: load, write, stream, rank by score + theme relevance
    cli.py      python -m poetry poem ...
    evaluate.py held-out perplexity, rules on/off, speed             (python -m poetry.evaluate poem)
"""
__all__ = ["MAX_N", "PoemWriter"]


def __getattr__(name: str):
    # the writer (and torch) load on first use, not for `python -m poetry.poems.<module>`
    if name in __all__:
        from . import writer
        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
