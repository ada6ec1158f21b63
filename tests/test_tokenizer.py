"""TextTokenizer: trained WordPiece/BPE, published tokenizer.json layouts."""

import pickle

import numpy as np
import pytest
from tokenizers import decoders
from tokenizers import models
from tokenizers import normalizers
from tokenizers import pre_tokenizers
from tokenizers import processors
from tokenizers import trainers
import tokenizers

from audiopt.text import TextTokenizer

CAPTIONS = [
    "A dog barks loudly in the distance while cars pass by.",
    "Rain falls steadily on a tin roof; thunder rumbles far away.",
    "A man speaks calmly over soft piano music in a small room.",
    "Birds chirp and a stream flows gently through the forest.",
    "An electric guitar plays a distorted riff with heavy drums.",
    "A woman laughs, then children shout and a door slams.",
    "Wind howls across an open field as leaves rustle.",
    "A crowd cheers loudly in a stadium after a goal.",
]
CORPUS = CAPTIONS * 8


@pytest.fixture(scope="module")
def wordpiece():
  return TextTokenizer.train_wordpiece(CORPUS, 200, min_frequency=2)


@pytest.fixture(scope="module")
def bpe():
  return TextTokenizer.train_bpe(CORPUS, 400, min_frequency=2)


@pytest.mark.parametrize("train", ["train_wordpiece", "train_bpe"])
def test_training_is_deterministic(train):
  size = 200 if train == "train_wordpiece" else 400
  runs = {getattr(TextTokenizer, train)(CORPUS, size).to_json()
          for _ in range(6)}
  assert len(runs) == 1


def test_wordpiece_layout(wordpiece):
  tok = wordpiece
  assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id) == (
      0, 1, 2, 3, 4)
  assert tok.cls_id == tok.bos_id and tok.sep_id == tok.eos_id
  assert 100 < tok.vocab_size <= 200
  ids, mask = tok.encode("A dog barks in the rain.", 16)
  assert ids.shape == mask.shape == (16,)
  assert ids.dtype == np.int32 and mask.dtype == bool
  n = int(mask.sum())
  assert ids[0] == tok.bos_id and ids[n - 1] == tok.eos_id
  assert mask[:n].all() and not mask[n:].any()
  assert (ids[n:] == tok.pad_id).all()
  assert tok.decode(ids) == "a dog barks in the rain."
  assert tok.tokens("barks")[1:-1] == ["barks"]


def test_truncation_keeps_bos_and_eos(wordpiece):
  ids, mask = wordpiece.encode(CAPTIONS[0], 5)
  assert mask.all()
  assert ids[0] == wordpiece.bos_id and ids[-1] == wordpiece.eos_id
  assert wordpiece.decode(ids) == "a dog barks"
  with pytest.raises(ValueError, match="no room"):
    wordpiece.encode("dog", 2)


def test_bpe_layout_and_cased_round_trip(bpe):
  tok = bpe
  assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id) == (
      0, 1, 2, 3, 4)
  text = "A dog barks; Rain falls."
  ids, mask = tok.encode(text, 20)
  n = int(mask.sum())
  assert ids[0] == tok.bos_id and ids[n - 1] == tok.eos_id
  assert (ids[n:] == tok.pad_id).all()
  assert tok.decode(ids) == text


def test_encode_batch_matches_encode(wordpiece):
  ids, mask = wordpiece.encode_batch(CAPTIONS[:3] + [""], 12)
  assert ids.shape == mask.shape == (4, 12)
  for row, text in enumerate(CAPTIONS[:3] + [""]):
    one_ids, one_mask = wordpiece.encode(text, 12)
    np.testing.assert_array_equal(ids[row], one_ids)
    np.testing.assert_array_equal(mask[row], one_mask)
  assert mask[3].sum() == 2  # "" is just BOS EOS


def test_decode_stops_at_eos_and_skips_specials(wordpiece):
  tok = wordpiece
  dog, the = (tok.tokenizer.token_to_id(w) for w in ("dog", "the"))
  ids = [tok.bos_id, dog, tok.pad_id, tok.mask_id, the, tok.eos_id, dog,
         tok.pad_id]
  assert tok.decode(ids) == "dog the"
  assert tok.decode([dog, the]) == "dog the"
  assert tok.decode_batch(np.array([[tok.bos_id, dog, tok.eos_id],
                                    [the, tok.eos_id, dog]])) == ["dog",
                                                                   "the"]


@pytest.mark.parametrize("which", ["wordpiece", "bpe"])
def test_json_and_pickle_round_trip(which, request, tmp_path):
  tok = request.getfixturevalue(which)
  for copy in (TextTokenizer.from_json(tok.to_json()),
               pickle.loads(pickle.dumps(tok))):
    assert copy.to_json() == tok.to_json()
    assert copy.special_ids == tok.special_ids
    for text in CAPTIONS:
      np.testing.assert_array_equal(copy.encode(text, 24)[0],
                                    tok.encode(text, 24)[0])
  tok.save(tmp_path / "tokenizer.json")
  assert TextTokenizer.from_file(tmp_path / "tokenizer.json").to_json() == (
      tok.to_json())


def test_missing_specials_are_named():
  raw = tokenizers.Tokenizer(models.WordLevel({"dog": 0, "[UNK]": 1},
                                              unk_token="[UNK]"))
  with pytest.raises(ValueError, match=r"pad.*bos.*eos.*mask"):
    TextTokenizer(raw)


def _bert_base_uncased_layout(path):
  """A tokenizer.json laid out as bert-base-uncased's (ids 0, 100..103)."""
  words = ["the", "a", "dog", "barks", "bark", "rain", "falls", "on", "roof",
           "##s", "##ing", "loud", "##ly", ".", ","]
  vocab = (["[PAD]"] + [f"[unused{i}]" for i in range(99)]
           + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)
  tok = tokenizers.Tokenizer(models.WordPiece(
      {w: i for i, w in enumerate(vocab)}, unk_token="[UNK]",
      max_input_chars_per_word=100))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS]:0 $A:0 [SEP]:0",
      pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
      special_tokens=[("[CLS]", 101), ("[SEP]", 102)])
  tok.decoder = decoders.WordPiece(prefix="##")
  tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
  tok.save(str(path))
  return dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
              sep_token="[SEP]", mask_token="[MASK]")


def _bart_base_layout(path):
  """A tokenizer.json laid out as bart-base's: byte-level BPE, <mask> last."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
      vocab_size=350, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False))
  tok.add_special_tokens(["<mask>"])
  tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
  tok.decoder = decoders.ByteLevel()
  tok.save(str(path))
  return dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>",
              unk_token="<unk>", cls_token="<s>", sep_token="</s>",
              mask_token="<mask>")


@pytest.mark.parametrize("layout,specials", [
    (_bert_base_uncased_layout, (0, 101, 102, 103, 100)),
    (_bart_base_layout, (1, 0, 2, 350, 3)),
])
def test_published_layouts_match_transformers(layout, specials, tmp_path):
  transformers = pytest.importorskip("transformers")
  path = tmp_path / "tokenizer.json"
  names = layout(path)
  tok = TextTokenizer.from_file(path)
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id,
          tok.unk_id) == specials
  ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path),
                                             **names)
  texts = ["The dogs bark loudly on the roof.", "Rain falls, a dog barks.",
           "the roof", "A zebra!"]
  for max_len in (6, 16):
    want = ref(texts, max_length=max_len, padding="max_length",
               truncation=True)
    ids, mask = tok.encode_batch(texts, max_len)
    np.testing.assert_array_equal(ids, want["input_ids"])
    np.testing.assert_array_equal(mask, np.asarray(want["attention_mask"],
                                                   bool))
    for row in ids:
      assert tok.decode(row) == ref.decode(row, skip_special_tokens=True)
