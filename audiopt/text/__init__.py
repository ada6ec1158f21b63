"""Text handling: tokenizers for captions and tag sequences."""

from audiopt.text.tokenizer import TextTokenizer  # noqa: F401
