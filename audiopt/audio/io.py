"""Audio decoding, resampling and FLAC encoding.

Everything here works on float32 mono waveforms with samples in [-1, 1], the
form the training records hold (as 16-bit FLAC) and the front end consumes.
Decoding failures of any kind surface as `AudioDecodeError`, whose message
names the source, so that ingest can quarantine the clip with its reason.
"""

import io
import os
from typing import Union

import numpy as np
import soundfile
import soxr

AudioSource = Union[bytes, bytearray, memoryview, str, os.PathLike]


class AudioDecodeError(ValueError):
  """Audio that cannot be decoded into a usable waveform.

  Attributes:
    source: the file path or caller-given name of the audio.
    reason: what went wrong.
  """

  def __init__(self, source: str, reason: str):
    super().__init__(f"cannot decode audio {source!r}: {reason}")
    self.source = source
    self.reason = reason


def encode_flac(wav: np.ndarray, sample_rate: int = 16000) -> bytes:
  """Encodes a mono waveform as 16-bit FLAC.

  Args:
    wav: [N] float waveform, nominally in [-1, 1]; values outside are clipped.
    sample_rate: sampling rate in Hz written to the FLAC header.

  Returns:
    The FLAC file as bytes.

  Raises:
    ValueError: if `wav` is not 1-D, is empty or holds NaN.
  """
  wav = np.asarray(wav, dtype=np.float32)
  if wav.ndim != 1:
    raise ValueError(f"encode_flac expects a 1-D waveform, got shape {wav.shape}")
  if wav.size == 0:
    raise ValueError("encode_flac got an empty waveform")
  if np.isnan(wav).any():
    raise ValueError("encode_flac got NaN samples")
  buf = io.BytesIO()
  soundfile.write(buf, np.clip(wav, -1.0, 1.0), sample_rate, format="FLAC",
                  subtype="PCM_16")
  return buf.getvalue()


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
  """Resamples with libsoxr's high-quality filter (the `soxr` package).

  Args:
    wav: [N] waveform.
    sr_in: its sampling rate in Hz.
    sr_out: the wanted sampling rate in Hz.

  Returns:
    [ceil(N * sr_out / sr_in)] float32 waveform (a float32 copy of `wav`
    when the rates are equal).
  """
  if sr_in <= 0 or sr_out <= 0:
    raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
  wav = np.asarray(wav, dtype=np.float32)
  if sr_in == sr_out:
    return wav.copy()
  out = soxr.resample(wav, int(sr_in), int(sr_out), quality="HQ")
  # soxr rounds the output length; callers rely on the ceiling.
  return fit_length(out.astype(np.float32, copy=False),
                    resampled_length(wav.shape[0], sr_in, sr_out))


def resampled_length(num_samples: int, sr_in: int, sr_out: int) -> int:
  """ceil(num_samples * sr_out / sr_in), the length `resample` returns."""
  return -(-int(num_samples) * int(sr_out) // int(sr_in))


def fit_length(wav: np.ndarray, length: int) -> np.ndarray:
  """Cuts or zero-pads a [N] waveform to [length]."""
  if wav.shape[0] >= length:
    return wav[:length]
  return np.concatenate([wav, np.zeros(length - wav.shape[0], wav.dtype)])


def decode_audio_with_rate(
    data: AudioSource,
    *,
    name: str | None = None,
    target_sample_rate: int | None = 16000,
) -> tuple[np.ndarray, int]:
  """Like `decode_audio`, also returning the rate of the returned waveform.

  Args:
    data: encoded audio bytes (any format libsndfile reads) or a file path.
    name: how error messages name the audio; defaults to the path, or
      "<bytes>" for in-memory data.
    target_sample_rate: resample to this rate; None keeps the file's rate.

  Returns:
    ([N] float32 mono waveform, its sampling rate in Hz).

  Raises:
    AudioDecodeError: unreadable, empty, truncated or non-finite audio.
  """
  is_path = isinstance(data, (str, os.PathLike))
  source = name if name is not None else (os.fspath(data) if is_path else "<bytes>")
  if is_path:
    target = os.fspath(data)
  else:
    if len(data) == 0:
      raise AudioDecodeError(source, "empty data (0 bytes)")
    target = io.BytesIO(bytes(data))
  try:
    with soundfile.SoundFile(target) as f:
      sample_rate = f.samplerate
      declared = f.frames
      wav = f.read(dtype="float32", always_2d=False)
  except soundfile.LibsndfileError as e:
    raise AudioDecodeError(source, e.error_string) from e
  except Exception as e:  # OS and other format errors.
    raise AudioDecodeError(source, f"{type(e).__name__}: {e}") from e
  if wav.shape[0] == 0:
    raise AudioDecodeError(source, "no samples")
  if wav.shape[0] < declared:
    raise AudioDecodeError(
        source, f"truncated: read {wav.shape[0]} of {declared} frames")
  if not np.isfinite(wav).all():
    raise AudioDecodeError(source, "non-finite samples")
  if wav.ndim == 2:  # mono comes back 1-D: no downmix pass over it
    wav = wav.mean(axis=1, dtype=np.float32)
  if target_sample_rate is not None and target_sample_rate != sample_rate:
    wav = resample(wav, sample_rate, target_sample_rate)
    sample_rate = target_sample_rate
  return wav, sample_rate


def decode_audio(
    data: AudioSource,
    *,
    name: str | None = None,
    target_sample_rate: int | None = 16000,
) -> np.ndarray:
  """Decodes audio to a float32 mono waveform.

  Multi-channel audio is downmixed by the mean over channels; audio at
  another rate is resampled with `resample`.

  Args:
    data: encoded audio bytes (any format libsndfile reads) or a file path.
    name: how error messages name the audio; defaults to the path, or
      "<bytes>" for in-memory data.
    target_sample_rate: resample to this rate; None keeps the file's rate.

  Returns:
    [N] float32 mono waveform, N >= 1.

  Raises:
    AudioDecodeError: unreadable, empty, truncated or non-finite audio.
  """
  wav, _ = decode_audio_with_rate(
      data, name=name, target_sample_rate=target_sample_rate)
  return wav
