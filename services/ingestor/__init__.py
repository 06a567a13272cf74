"""Dataset ingestor: downloads CAMEL, ShareGPT and Alpaca data and converts it into one
token-budgeted conversation dataset (issue: dataset ingestor)."""
