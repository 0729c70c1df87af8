"""The ``vatt`` trainer's text tokenizer: lower-cased words hashed into a fixed vocabulary.

VATT (Akbari et al., 2021, arXiv 2104.11178) feeds text as one-hot word ids over a fixed
vocabulary through a learned word-embedding table. A trained vocabulary (word2vec's, a BERT word
piece list) would have to be downloaded; this tokenizer needs nothing:

* a text is case-folded and split into words: maximal runs of Unicode letters and digits
  (``"Don't stop!"`` -> ``["don", "t", "stop"]``); at most ``max_words`` words are read, so a
  hostile multi-megabyte caption costs no more than a short one;
* a word's id is ``1 + (blake2b-64(word, UTF-8) mod (vocab_size - 1))``, the "hashing trick"
  (Weinberger et al., 2009, arXiv 0902.2206): stable across processes and Python versions (never
  Python's salted ``hash``), no out-of-vocabulary words, and different words may share an id
  (a collision) -- with ``V - 1`` buckets and ``n`` distinct words about ``n^2 / 2V`` pairs do;
* id ``0`` is padding, never a word.

A caption bag (HowTo100M's neighbouring captions, a list of strings) becomes a fixed
``[bag_size, max_words]`` id tensor and a ``[bag_size]`` mask of the captions that hold a word.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import torch

__all__ = ["PAD_ID", "HashTokenizer"]

#: the padding id (no word maps to it)
PAD_ID = 0

_WORD = re.compile(r"[^\W_]+")


class HashTokenizer:
    """Words -> ids by hashing into ``vocab_size - 1`` buckets (``0`` is padding).

    Args:
        vocab_size: rows of the embedding table, ``>= 2``.
        max_words: ids per caption (longer captions are cut, shorter ones padded with ``0``).
    """

    def __init__(self, vocab_size: int, max_words: int) -> None:
        for name, value, low in (("vocab_size", vocab_size, 2), ("max_words", max_words, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.vocab_size, self.max_words = vocab_size, max_words

    def words(self, text: str) -> list[str]:
        """The first ``max_words`` words of ``text``, case-folded."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        out = []
        for match in _WORD.finditer(text):
            out.append(match.group().casefold())
            if len(out) == self.max_words:
                break
        return out

    def word_id(self, word: str) -> int:
        """The id of one word, in ``[1, vocab_size)``."""
        digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return 1 + int.from_bytes(digest, "little") % (self.vocab_size - 1)

    def encode(self, text: str) -> torch.Tensor:
        """int64 ``[max_words]``: the word ids of ``text``, then padding."""
        ids = [self.word_id(w) for w in self.words(text)]
        out = torch.full((self.max_words,), PAD_ID, dtype=torch.int64)
        if ids:
            out[: len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def encode_bag(self, texts: str | Sequence[str] | None, bag_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [bag_size, max_words] int64, mask [bag_size] bool)`` for a caption bag.

        ``texts``: one caption, a list of captions (the first ``bag_size`` are kept) or ``None``
        (no text: every mask entry ``False``). A caption without a word is masked out.
        """
        if isinstance(bag_size, bool) or not isinstance(bag_size, int) or bag_size < 1:
            raise ValueError(f"bag_size must be an int >= 1, got {bag_size!r}")
        if texts is None:
            captions: Sequence[str] = ()
        elif isinstance(texts, str):
            captions = (texts,)
        elif isinstance(texts, (list, tuple)):
            captions = texts[:bag_size]
        else:
            raise TypeError(f"text must be a str, a list of str or None, got {type(texts).__name__}")
        ids = torch.full((bag_size, self.max_words), PAD_ID, dtype=torch.int64)
        for row, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise TypeError(f"caption {row} of the bag must be a str, got {type(caption).__name__}")
            ids[row] = self.encode(caption)
        return ids, ids[:, 0] != PAD_ID

    def __repr__(self) -> str:
        return f"HashTokenizer(vocab_size={self.vocab_size}, max_words={self.max_words})"
