"""Record formats: the common conversation record every converter produces, one converter per
input format (CAMEL chat, CAMEL science, Alpaca, ShareGPT, conversation files), and the detection
of a file's format from its first records."""

from __future__ import annotations

CAMEL_CHAT = "camel_chat"
CAMEL_SCIENCE = "camel_science"
SHAREGPT = "sharegpt"
ALPACA = "alpaca"
CONVERSATION = "conversation"
FORMATS = (CAMEL_CHAT, CAMEL_SCIENCE, SHAREGPT, ALPACA, CONVERSATION)
