"""Multi-turn chat: the recent turns -> the next reply, SentencePiece pieces.

    format.py   the turn separator and the source text (what training and generation share)
    data.py     the corpus: PyPI chat wheels -> cache/chat splits   (python -m chatbot.data prepare)
    train.py    train and export data/models/chat                   (python -m chatbot.train)
    bot.py      Bot: load, reply, replies, stream
    cli.py      python -m chatbot (talk, --message, batch)
    evaluate.py held-out perplexity vs n-gram, replies, speed       (python -m chatbot.evaluate)
"""
