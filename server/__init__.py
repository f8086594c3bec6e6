"""The app's server plumbing, apart from the page (app.py): which files a request may name."""
