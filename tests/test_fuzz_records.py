"""Fuzzing the record parser: any record dict is normalised or rejected with
a ValueError naming the record and the key."""

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np

from audiopt.audio import io as audio_io
from audiopt.data import schema

_FLAC = audio_io.encode_flac(np.zeros(1600, np.float32), 16000)
_VALUES = st.one_of(
    st.none(), st.text(max_size=8), st.integers(-3, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=16),
    st.just(_FLAC), st.just(_FLAC[:40]), st.sampled_from(schema.DOMAINS),
    st.lists(st.integers(-2, 5), max_size=4),
    st.lists(st.text(max_size=3), max_size=3),
    st.builds(lambda n, v: np.full(n, v, np.float32), st.integers(0, 3000),
              st.floats(-2, 2, width=32)),
    st.just(np.array([np.nan, 0.0], np.float32)),
    st.just(np.zeros((2, 2), np.float32)))


@st.composite
def records(draw):
  good = {"clip_id": "c1", "audio": _FLAC, "source": "s", "domain": "sound",
          "duration": 0.1, "tags": [1, 2]}
  keys = draw(st.lists(st.sampled_from(schema.FIELDS + ("extra",)),
                       max_size=4, unique=True))
  for key in keys:
    if draw(st.booleans()):
      good.pop(key, None)
    else:
      good[key] = draw(_VALUES)
  return good


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_any_record_is_normalised_or_rejected_by_key(example):
  try:
    out = schema.validate_example(example, index_or_id=7)
  except ValueError as e:
    assert str(e).startswith("record "), e
    assert "key '" in str(e), e
    return
  assert set(out) == set(schema.FIELDS)
  assert isinstance(out["audio"], bytes) and np.isfinite(out["duration"])
  for key in schema.ID_FIELDS:
    assert out[key].dtype == np.int64 and (out[key] >= 0).all()
