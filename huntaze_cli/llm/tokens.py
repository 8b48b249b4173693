"""Input-token estimates that hold for any script, without a tokenizer.

No tokenizer for OpenAI's encodings runs offline here: tiktoken downloads its tables on
first use, and the packages that bundle them weigh tens of megabytes. So `--dry-run`
counts characters by class, which errs high on every script we know of:

- a run of ASCII letters and digits: one token per 4 characters, or per 2 beyond 12
  characters (long identifiers, base64 and other text without spaces tokenise poorly);
- ASCII punctuation: one token each; spaces: none (BPE merges them into the next word);
- CJK ideographs, kana and hangul: one token per character;
- other non-ASCII characters: one token each, two above U+FFFF (emoji);
- each message: 4 tokens of chat framing, plus 3 for the reply's priming.

``max_input_tokens`` is a hard upper bound instead: OpenAI's encodings are byte-level
BPE, where every token stands for at least one UTF-8 byte, so a text never has more
tokens than bytes. The dry run prices its high estimate with it.
"""

from __future__ import annotations

import re

from huntaze_cli.llm.types import GenerationRequest

PER_MESSAGE = 4
PRIMING = 3
_WORDS = re.compile(r"[A-Za-z0-9]+")
_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")
_ASTRAL = re.compile(r"[\U00010000-\U0010ffff]")
_SHORT_WORD = [-(-n // 4) for n in range(13)]  # tokens of a run of n <= 12 letters


def estimate_text_tokens(text: str) -> int:
    """A high estimate of the tokens of ``text`` (see the module docstring)."""
    tokens = len(_PUNCT.findall(text))
    for n in map(len, _WORDS.findall(text)):
        tokens += _SHORT_WORD[n] if n <= 12 else 3 + -(-(n - 12) // 2)
    if text.isascii():
        return tokens
    ascii_chars = len(text.encode("ascii", "ignore"))
    # CJK, astral (emoji) and every other non-ASCII character: one token, astral two.
    tokens += (len(text) - ascii_chars) + len(_ASTRAL.findall(text))
    return tokens


def estimate_input_tokens(request: GenerationRequest) -> int:
    """A high estimate of a request's input tokens, chat framing included."""
    return PRIMING + sum(PER_MESSAGE + estimate_text_tokens(m.content) for m in request.messages)


def max_input_tokens(request: GenerationRequest) -> int:
    """A request's input tokens can be no more than this (one per UTF-8 byte, framing)."""
    return PRIMING + sum(
        PER_MESSAGE + len(m.content.encode("utf-8", "surrogatepass")) for m in request.messages
    )
