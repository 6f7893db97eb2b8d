"""One module per goldmaster command; cli.py registers them."""
