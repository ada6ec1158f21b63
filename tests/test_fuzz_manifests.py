"""Fuzzing the manifest readers: bad rows become ManifestErrors, bad files
raise a ValueError naming the file; nothing else escapes."""

import os
import tempfile

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from audiopt.data import manifests

READERS = {
    "cuts.jsonl": manifests.read_lhotse_cuts,
    "audiocaps.csv": manifests.read_audiocaps_csv,
    "clotho.csv": manifests.read_clotho_csv,
    "audioset.csv": manifests.read_audioset_csv,
    "plain.jsonl": manifests.read_plain_jsonl,
    "plain.csv": manifests.read_plain_csv,
}

# Lines that look like each format, so the fuzzer reaches the row parsers.
PIECES = [
    '{"id": "c1", "recording": {"sources": [{"source": "a.wav"}]}}',
    '{"id": 3, "start": -1, "duration": "x", "supervisions": [{}]}',
    '{"path": "a.wav", "clip_id": "x", "caption": 5, "tags": [1]}',
    "audiocap_id,youtube_id,start_time,caption", "1,abc,10,a dog barks",
    "file_name,caption_1,caption_2", "a.wav,one,",
    "# YTID, start_seconds, end_seconds, positive_labels",
    'abc, 0.0, 10.0, "/m/09x0r,/m/0jbk"', "path,caption,tags", "a.wav,,",
    "nan,inf,-1", '"unterminated', "\x00\xff", "{", "[]", "null", "",
]


@st.composite
def manifest_text(draw):
  lines = draw(st.lists(st.one_of(st.sampled_from(PIECES), st.text(
      max_size=40)), max_size=6))
  return "\n".join(lines)


def _check(name, text):
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, name)
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
      f.write(text)
    try:
      items = list(READERS[name](path))
    except ValueError as e:
      assert path in str(e), (name, text, e)
      return
    for item in items:
      assert isinstance(item, (manifests.ManifestRow, manifests.ManifestError))
      assert item.row_ref.startswith(path), item
      if isinstance(item, manifests.ManifestError):
        assert item.reason


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(READERS)), manifest_text())
def test_any_text_gives_rows_errors_or_a_named_file_error(name, text):
  _check(name, text)
