"""Caption tokenizer over Hugging Face `tokenizers`.

`TextTokenizer` wraps a `tokenizers.Tokenizer` of one of two families:

  WordPiece (BERT)  [CLS] text [SEP], specials [PAD] [UNK] [CLS] [SEP] [MASK]
  byte-level BPE    <s> text </s>,    specials <s> <pad> </s> <unk> <mask>
  (BART, RoBERTa)

It either loads a published `tokenizer.json` (BERT-base-uncased, BART-base)
or trains one of these families on the corpus captions. The whole state is
the `tokenizer.json` text (`to_json` / `from_json`), so a checkpoint's
metadata can carry it; special ids are found from the token strings.

BOS/EOS are added by the tokenizer's own post-processor, as the family does
([CLS]/[SEP] or <s>/</s>); truncation keeps them and cuts the text.
"""

import collections
from collections.abc import Iterable, Sequence
import threading
from typing import Any

import numpy as np
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers
from tokenizers import processors
from tokenizers import trainers

# Role -> token strings that fill it, tried in order.
_SPECIAL_CANDIDATES: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>"),
    "bos": ("[CLS]", "<s>"),
    "eos": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
    "unk": ("[UNK]", "<unk>"),
}
_WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def _find_specials(tokenizer: tokenizers.Tokenizer) -> dict[str, int]:
  found, missing = {}, []
  for role, candidates in _SPECIAL_CANDIDATES.items():
    ids = [tokenizer.token_to_id(t) for t in candidates]
    ids = [i for i in ids if i is not None]
    if ids:
      found[role] = ids[0]
    else:
      missing.append(f"{role} (one of {candidates})")
  if missing:
    raise ValueError(f"tokenizer has no special token for: {missing}")
  return found


# Continuation characters are spelt at this offset while learning WordPiece
# pieces (a private-use plane, absent from captions).
_CONTINUATION_OFFSET = 0xF0000


def _count_words(tok: tokenizers.Tokenizer,
                 texts: Iterable[str]) -> dict[str, int]:
  """Word -> count after `tok`'s normaliser and pre-tokenizer."""
  counts = collections.Counter()
  for text in texts:
    text = tok.normalizer.normalize_str(text)
    counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text))
  return dict(counts)


def _top_characters(words: dict[str, int], limit: int) -> set[str]:
  """The `limit` most frequent characters (ties: lower code point first)."""
  counts = collections.Counter()
  for word, count in words.items():
    for c in word:
      counts[c] += count
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return {c for c, _ in ranked[:limit]}


def _mark_continuation(word: str, alphabet: set[str]) -> str | None:
  """`word` with every character after the first moved to the offset plane.

  Returns None for a word the learner must skip: a character outside
  `alphabet` or one that cannot be moved.
  """
  if any(c not in alphabet or ord(c) >= 0x10000 for c in word):
    return None
  return word[0] + "".join(chr(ord(c) + _CONTINUATION_OFFSET)
                           for c in word[1:])


def _unmark(piece: str) -> str:
  """Inverse of `_mark_continuation` for one learnt piece: "og" -> "##og"."""
  plain = "".join(chr(ord(c) - _CONTINUATION_OFFSET)
                  if ord(c) >= _CONTINUATION_OFFSET else c for c in piece)
  return "##" + plain if ord(piece[0]) >= _CONTINUATION_OFFSET else plain


class TextTokenizer:
  """A `tokenizers.Tokenizer` with fixed-width encoding and special ids.

  Thread-safe and picklable (the Grain pipeline calls `encode` from worker
  threads or processes).

  Attributes:
    tokenizer: the wrapped `tokenizers.Tokenizer` (no truncation/padding).
  """

  def __init__(self, tokenizer: tokenizers.Tokenizer):
    """Wraps `tokenizer`.

    A tokenizer without a post-processor gets the template "BOS $A EOS".

    Args:
      tokenizer: a `tokenizers.Tokenizer` whose vocabulary holds the pad,
        bos ([CLS] or <s>), eos ([SEP] or </s>), mask and unk tokens.

    Raises:
      ValueError: naming the special tokens that are missing.
    """
    specials = _find_specials(tokenizer)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    if tokenizer.post_processor is None:
      bos = tokenizer.id_to_token(specials["bos"])
      eos = tokenizer.id_to_token(specials["eos"])
      tokenizer.post_processor = processors.TemplateProcessing(
          single=f"{bos} $A {eos}",
          special_tokens=[(bos, specials["bos"]), (eos, specials["eos"])])
    self.tokenizer = tokenizer
    self._specials = specials
    self._fixed: dict[int, tokenizers.Tokenizer] = {}
    self._lock = threading.Lock()

  # Construction and serialisation.

  @classmethod
  def from_file(cls, path: str) -> "TextTokenizer":
    """Loads a Hugging Face `tokenizer.json` (e.g. BERT-base-uncased)."""
    return cls(tokenizers.Tokenizer.from_file(str(path)))

  @classmethod
  def from_json(cls, text: str) -> "TextTokenizer":
    """Rebuilds a tokenizer from `to_json()` (tokenizer.json contents)."""
    return cls(tokenizers.Tokenizer.from_str(text))

  def to_json(self) -> str:
    """The tokenizer.json text; `from_json` and `from_file` read it back."""
    return self.tokenizer.to_str()

  def save(self, path: str) -> None:
    """Writes tokenizer.json to `path`."""
    self.tokenizer.save(str(path))

  @classmethod
  def train_wordpiece(cls, texts: Iterable[str], vocab_size: int, *,
                      lowercase: bool = True, min_frequency: int = 2,
                      limit_alphabet: int = 1000) -> "TextTokenizer":
    """Trains a BERT-style WordPiece tokenizer on `texts`; deterministic.

    `tokenizers`' own WordPieceTrainer numbers the "##x" pieces in hash-map
    order, so equal-count merges, and with them the vocabulary, change from
    run to run (huggingface/tokenizers#1794). Here continuation characters
    are instead spelt as distinct code points, a plain BPE trainer learns the
    pieces over an alphabet sorted by code point, and the pieces are spelt
    back with "##": the same WordPiece vocabulary, identical on every run.

    Args:
      texts: training captions.
      vocab_size: vocabulary size, specials included.
      lowercase: lowercase (and strip accents of) the text, as uncased BERT.
      min_frequency: merges seen fewer times are not learnt.
      limit_alphabet: most characters kept (the most frequent; words with
        other characters are left out of training and encode as [UNK]).

    Returns:
      A tokenizer with ids 0..4 = [PAD] [UNK] [CLS] [SEP] [MASK] that encodes
      "[CLS] text [SEP]".
    """
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    words = _count_words(tok, texts)
    alphabet = _top_characters(words, limit_alphabet)
    marked = {}
    for word, count in words.items():
      spelt = _mark_continuation(word, alphabet)
      if spelt is not None:
        marked[spelt] = count
    learner = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    learner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=list(_WORDPIECE_SPECIALS),
        initial_alphabet=sorted({c for w in marked for c in w}),
        show_progress=False)
    learner.train_from_iterator(
        (" ".join([w] * n) for w, n in sorted(marked.items())), trainer)
    vocab = {_unmark(t) if t not in _WORDPIECE_SPECIALS else t: i
             for t, i in learner.get_vocab(with_added_tokens=True).items()}
    tok.model = models.WordPiece(vocab, unk_token="[UNK]")
    tok.add_special_tokens(list(_WORDPIECE_SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return cls(tok)

  @classmethod
  def train_bpe(cls, texts: Iterable[str], vocab_size: int, *,
                min_frequency: int = 2,
                add_prefix_space: bool = True) -> "TextTokenizer":
    """Trains a BART-style byte-level BPE tokenizer on `texts`; deterministic.

    Args:
      texts: training captions (cased, as BART).
      vocab_size: vocabulary size, specials and the 256 bytes included.
      min_frequency: merges seen fewer times are not learnt.
      add_prefix_space: treat the first word like any other (" dog" and
        "dog" then share a token at the start of a caption).

    Returns:
      A tokenizer with ids 0..4 = <s> <pad> </s> <unk> <mask> that encodes
      "<s> text </s>".
    """
    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=list(_BPE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")),
                        ("</s>", tok.token_to_id("</s>"))])
    return cls(tok)

  # Vocabulary.

  @property
  def vocab_size(self) -> int:
    """Number of ids, added tokens included (ids lie in [0, vocab_size))."""
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def pad_id(self) -> int:
    """Id of [PAD] / <pad>."""
    return self._specials["pad"]

  @property
  def bos_id(self) -> int:
    """Id that starts every sequence: [CLS] / <s>."""
    return self._specials["bos"]

  @property
  def cls_id(self) -> int:
    """Alias of `bos_id`."""
    return self._specials["bos"]

  @property
  def eos_id(self) -> int:
    """Id that ends every sequence: [SEP] / </s>."""
    return self._specials["eos"]

  @property
  def sep_id(self) -> int:
    """Alias of `eos_id`."""
    return self._specials["eos"]

  @property
  def mask_id(self) -> int:
    """Id of [MASK] / <mask>."""
    return self._specials["mask"]

  @property
  def unk_id(self) -> int:
    """Id of [UNK] / <unk>."""
    return self._specials["unk"]

  @property
  def special_ids(self) -> frozenset[int]:
    """Ids of pad, bos, eos, mask and unk."""
    return frozenset(self._specials.values())

  # Encoding and decoding.

  def _fixed_width(self, max_len: int) -> tokenizers.Tokenizer:
    """A private copy that truncates and pads to `max_len`."""
    tok = self._fixed.get(max_len)
    if tok is not None:
      return tok
    n_special = self.tokenizer.post_processor.num_special_tokens_to_add(False)
    if max_len < n_special + 1:
      raise ValueError(f"max_len {max_len} leaves no room for text beside "
                       f"{n_special} special tokens")
    with self._lock:
      tok = tokenizers.Tokenizer.from_str(self.tokenizer.to_str())
      tok.enable_truncation(max_length=max_len)
      tok.enable_padding(length=max_len, pad_id=self.pad_id,
                         pad_token=self.tokenizer.id_to_token(self.pad_id))
      self._fixed[max_len] = tok
    return tok

  def encode(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenizes one text to a fixed width.

    Args:
      text: the text.
      max_len: output width L; longer texts are cut, keeping BOS and EOS.

    Returns:
      ids [L] int32 ("BOS tokens EOS" then pad_id) and mask [L] bool, True
      on the BOS, text and EOS positions.
    """
    enc = self._fixed_width(max_len).encode(text)
    return (np.asarray(enc.ids, np.int32),
            np.asarray(enc.attention_mask, bool))

  def __call__(self, text: str, max_len: int) -> tuple[np.ndarray,
                                                       np.ndarray]:
    """Same as `encode`."""
    return self.encode(text, max_len)

  def encode_batch(self, texts: Sequence[str],
                   max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenizes texts in parallel; returns ids [B, L] int32, mask [B, L]."""
    encs = self._fixed_width(max_len).encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encs], np.int32).reshape(-1, max_len)
    mask = np.asarray([e.attention_mask for e in encs],
                      bool).reshape(-1, max_len)
    return ids, mask

  def decode(self, ids: Sequence[int] | np.ndarray) -> str:
    """Turns ids [L] back into text.

    Leading BOS ids are dropped, decoding stops at the first EOS, and the
    special tokens (pad, mask, unk, ...) are skipped.

    Args:
      ids: token ids, e.g. a row of `encode` or of a decoder's output.

    Returns:
      The text.
    """
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    start = 0
    while start < len(ids) and ids[start] == self.bos_id:
      start += 1
    ids = ids[start:]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    ids = [i for i in ids if i not in self.special_ids]
    return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

  def decode_batch(self, ids: Sequence[Sequence[int]] | np.ndarray
                   ) -> list[str]:
    """`decode` of every row of ids [B, L]."""
    return [self.decode(row) for row in np.asarray(ids)]

  def tokens(self, text: str) -> list[str]:
    """The token strings of `text`, specials included (for inspection)."""
    return self.tokenizer.encode(text).tokens

  # Pickling: the tokenizer.json text is the whole state.

  def __getstate__(self) -> dict[str, Any]:
    return {"json": self.to_json()}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(tokenizers.Tokenizer.from_str(state["json"]))
