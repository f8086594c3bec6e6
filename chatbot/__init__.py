"""Multi-turn chat (in progress): the corpus so far; see chatbot/README.md."""
