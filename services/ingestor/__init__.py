"""Dataset ingestor: downloads CAMEL, ShareGPT and Alpaca data (or reads local files and URLs)
and turns it into one token-budgeted conversation dataset.

``pipeline`` strings the ``stages`` together; ``formats`` converts records, ``rules`` decides what
a sample is, ``files`` reads and writes disk; ``commands`` are the command lines and ``tasks`` the
Celery service (see README.md, "Layout").
"""
