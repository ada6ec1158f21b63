"""Fuzzing the audio decoder: any bytes give a waveform or AudioDecodeError."""

import io

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import soundfile

from audiopt.audio import io as audio_io


def _valid(fmt: str) -> bytes:
  wav = np.sin(np.arange(1600) / 5.0).astype(np.float32) * 0.5
  if fmt == "FLAC":
    return audio_io.encode_flac(wav, 16000)
  buf = io.BytesIO()
  soundfile.write(buf, np.stack([wav, -wav], 1), 8000, format=fmt,
                  subtype="PCM_16")
  return buf.getvalue()


VALID = {fmt: _valid(fmt) for fmt in ("FLAC", "WAV")}


@st.composite
def damaged(draw):
  """A valid FLAC/WAV file truncated and with some bytes overwritten."""
  data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
  cut = draw(st.integers(0, len(data)))
  data = data[:cut] if draw(st.booleans()) else data
  for _ in range(draw(st.integers(0, 8))):
    if not data:
      break
    pos = draw(st.integers(0, len(data) - 1))
    data[pos] = draw(st.integers(0, 255))
  return bytes(data)


def _check(data: bytes):
  try:
    wav = audio_io.decode_audio(data, name="clip-under-test")
  except audio_io.AudioDecodeError as e:
    assert e.source == "clip-under-test"
    assert "clip-under-test" in str(e) and e.reason
    return
  assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size >= 1
  assert np.isfinite(wav).all()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_named_error(data):
  _check(data)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_files_decode_or_raise_named_error(data):
  _check(data)
