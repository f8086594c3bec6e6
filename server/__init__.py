"""The app's server side, apart from the page (app.py): the handlers behind its endpoints
(handlers, chat, batch, models), how results are shown (show), the files it writes (files),
what a request may name (inputs) and its memory (memory)."""
