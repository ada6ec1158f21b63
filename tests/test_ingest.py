"""Ingest stage: odd and corrupt audio, long files, resuming after SIGKILL."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile

from audiopt.audio import io as audio_io
from audiopt.data import clip_shards
from audiopt.data import ingest
from audiopt.data import journal
from audiopt.data.manifests import ManifestError, ManifestRow

SR = 16000
_RNG = np.random.RandomState(0)


def _noise(seconds, rate, channels=None):
  shape = (int(seconds * rate),) + ((channels,) if channels else ())
  return (0.1 * _RNG.randn(*shape)).astype(np.float32)


def _decode(flac):
  wav, rate = soundfile.read(io.BytesIO(flac), dtype="float32")
  assert rate == SR and wav.ndim == 1
  return wav


def _clips(out_dir):
  return {c["clip_id"]: c for c in clip_shards.ClipSource(str(out_dir))}


def _one_entry_per_row(out_dir, row_ids):
  ids = [r["id"] for r in journal.read_results(str(out_dir))]
  ids += [r["id"] for r in journal.read_quarantine(str(out_dir))]
  assert sorted(ids) == sorted(row_ids)


@pytest.fixture(scope="module")
def odd_audio(tmp_path_factory):
  """Audio files of every kind ingest must handle, keyed by clip id."""
  d = tmp_path_factory.mktemp("odd_audio")
  t = np.arange(2 * 48000) / 48000
  six = np.zeros((len(t), 6), np.float32)
  six[:, 0] = 0.6 * np.sin(2 * np.pi * 300 * t)
  soundfile.write(d / "six.wav", six, 48000)
  soundfile.write(d / "stereo44k.wav", _noise(3, 44100, 2), 44100)
  soundfile.write(d / "low8k.wav", _noise(2, 8000), 8000, subtype="PCM_16")
  soundfile.write(d / "vorbis.ogg", _noise(2, 22050), 22050, format="OGG")
  soundfile.write(d / "mpeg.mp3", _noise(2, 22050), 22050, format="MP3")
  soundfile.write(d / "short.wav", _noise(0.5, SR), SR)
  nan = _noise(2, SR)
  nan[1000] = np.nan
  soundfile.write(d / "nan.wav", nan, SR, subtype="FLOAT")
  flac = audio_io.encode_flac(_noise(4, SR))
  (d / "truncated.flac").write_bytes(flac[:len(flac) // 2])
  (d / "zero.wav").write_bytes(b"")
  (d / "header.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(512))
  rows = {p.stem: ManifestRow(clip_id=p.stem, path=str(p), source="test",
                              caption=f"caption {p.stem}", tags=("t",),
                              row_ref=f"m.jsonl:{i}")
          for i, p in enumerate(sorted(d.iterdir()), 1)}
  rows["missing"] = ManifestRow("missing", str(d / "missing"))
  return d, rows


def test_corrupt_and_odd_audio(odd_audio, tmp_path):
  _, rows = odd_audio
  items = list(rows.values()) + [
      ManifestError("m.csv:9", "m.csv:9: bad CSV"),
      ManifestRow("six", "/elsewhere/six.wav")]  # duplicate id
  out = tmp_path / "out"
  summary = ingest.run_ingest(items, str(out), shard_size=3, num_workers=1,
                              progress=False)
  quarantine = {r["id"]: r for r in journal.read_quarantine(str(out))}
  kinds = {k: v["kind"] for k, v in quarantine.items()}
  assert kinds == {"short": "too_short", "nan": "decode",
                   "truncated": "decode", "zero": "decode",
                   "header": "decode", "missing": "missing",
                   "m.csv:9": "manifest"}
  assert "non-finite" in quarantine["nan"]["reason"]
  assert "0 bytes" in quarantine["zero"]["reason"]
  assert "truncated.flac" in quarantine["truncated"]["reason"]
  assert "no such file" in quarantine["missing"]["reason"]
  assert quarantine["short"]["row_ref"] == rows["short"].row_ref
  assert summary["duplicates"] == 1
  assert summary["quarantine_kinds"]["decode"] == 4
  clips = _clips(out)
  assert sorted(clips) == ["low8k", "mpeg", "six", "stereo44k", "vorbis"]
  lengths = {k: len(_decode(c["audio"])) for k, c in clips.items()}
  assert lengths["low8k"] == lengths["six"] == 2 * SR
  assert lengths["stereo44k"] == 3 * SR
  assert abs(lengths["mpeg"] - 2 * SR) < 0.05 * SR  # MP3 encoder padding
  # Six channels, one of them a sine: the mean over channels.
  six = _decode(clips["six"]["audio"])
  peak = np.abs(six[1000:-1000]).max()
  assert abs(peak - 0.6 / 6) < 0.01
  meta = clips["stereo44k"]
  assert meta["caption"] == "caption stereo44k" and meta["tags"] == ["t"]
  assert meta["duration"] == 3.0 and meta["source"] == "test"
  _one_entry_per_row(out, [r for r in rows] + ["m.csv:9"])
  assert summary["results"] == 5 and summary["quarantined"] == 7
  # A rerun finds everything done.
  again = ingest.run_ingest(items, str(out), num_workers=1, progress=False)
  assert again["rows_pending"] == 0 and again["resumed"] == 12
  assert len(clip_shards.ClipSource(str(out))) == 5


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg is not installed")
def test_ffmpeg_fallback_for_other_containers(tmp_path):
  path = tmp_path / "tone.m4a"
  subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                  "sine=frequency=440:duration=2:sample_rate=44100",
                  "-c:a", "aac", str(path)], check=True)
  out = tmp_path / "out"
  summary = ingest.run_ingest([ManifestRow("tone", str(tmp_path / "tone"))],
                              str(out), num_workers=1, progress=False)
  assert summary["results"] == 1
  wav = _decode(_clips(out)["tone"]["audio"])
  assert abs(len(wav) - 2 * SR) < 0.05 * SR
  assert 0.1 < np.abs(wav).max() < 0.2  # lavfi sine amplitude is 1/8


def _write_long_silence(path, hours, rate=8000):
  """A silent WAV written in 10-minute pieces (cheap to make)."""
  with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_U8") as f:
    piece = np.zeros(rate * 600, np.float32)
    for _ in range(int(hours * 6)):
      f.write(piece)


def test_two_hour_file_split_with_bounded_memory(tmp_path):
  path = tmp_path / "two_hours.wav"
  _write_long_silence(path, 2)
  script = textwrap.dedent(f"""
      import json
      from audiopt.data import ingest, manifests
      if __name__ == "__main__":
        s = ingest.run_ingest([manifests.ManifestRow("long", {str(path)!r})],
                              {str(tmp_path / "out")!r}, num_workers=1,
                              progress=False)
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the
        # forking parent (a pytest worker holding JAX and TF).
        with open("/proc/self/status") as f:
          hwm = [l for l in f if l.startswith("VmHWM:")][0]
        s["maxrss_mb"] = int(hwm.split()[1]) / 1024
        print(json.dumps(s))
      """)
  result = subprocess.run([sys.executable, "-c", script], check=True,
                          capture_output=True, text=True, timeout=120)
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert summary["clips_written"] == 120
  assert summary["seconds_written"] == 7200.0
  # The whole file decoded at 16 kHz would be 460 MB of float32.
  assert summary["maxrss_mb"] < 300, summary["maxrss_mb"]
  (row,) = journal.read_results(str(tmp_path / "out"))
  assert row["clips"][:2] == ["long#000", "long#001"]
  assert len(row["clips"]) == 120


def test_two_hour_file_dropped_without_decoding(tmp_path):
  path = tmp_path / "two_hours.wav"
  _write_long_silence(path, 2)
  start = time.monotonic()
  summary = ingest.run_ingest([ManifestRow("long", str(path))],
                              str(tmp_path / "out"), long_clip_policy="drop",
                              num_workers=1, progress=False)
  assert time.monotonic() - start < 5
  assert summary["quarantine_kinds"] == {"too_long": 1}
  (entry,) = journal.read_quarantine(str(tmp_path / "out"))
  assert "7200.00 s" in entry["reason"] and entry["kind"] == "too_long"


def test_split_chunks_cover_the_clip(tmp_path):
  path = tmp_path / "long.wav"
  soundfile.write(path, _noise(150, 8000), 8000, subtype="FLOAT")
  rows = [ManifestRow("long", str(path)),
          ManifestRow("segment", str(path), start_s=10.0, duration_s=61.0)]
  out = tmp_path / "out"
  ingest.run_ingest(rows, str(out), max_seconds=60, num_workers=1,
                    progress=False)
  clips = _clips(out)
  parts = [_decode(clips[f"long#{k:03d}"]["audio"]) for k in range(3)]
  assert [len(p) for p in parts] == [50 * SR] * 3
  assert [clips[f"long#{k:03d}"]["offset_s"] for k in range(3)] == [
      0.0, 50.0, 100.0]
  whole = audio_io.decode_audio(str(path))
  np.testing.assert_allclose(np.concatenate(parts), whole, atol=2e-3)
  segment = [clips["segment#000"], clips["segment#001"]]
  assert [c["duration"] for c in segment] == [30.5, 30.5]
  assert segment[1]["offset_s"] == 40.5
  np.testing.assert_allclose(_decode(segment[0]["audio"])[SR:2 * SR],
                             whole[11 * SR:12 * SR], atol=2e-3)


def test_split_evenly_or_drop_a_short_tail(tmp_path, monkeypatch):
  path = tmp_path / "noise.wav"
  soundfile.write(path, _noise(4.5, SR), SR)
  # A known length splits evenly: 4.5 s into 3 x 1.5 s.
  out = tmp_path / "even"
  ingest.run_ingest([ManifestRow("a", str(path))], str(out),
                    min_seconds=1.0, max_seconds=2.0, num_workers=1,
                    progress=False)
  assert [c["duration"] for c in _clips(out).values()] == [1.5] * 3
  # A stream of unknown length (as from ffmpeg) is cut at max_seconds; the
  # 0.5 s left is shorter than min_seconds and dropped.
  real = ingest._open_source

  def unknown_length(*args):
    rate, _, blocks = real(*args)
    return rate, None, blocks

  monkeypatch.setattr(ingest, "_open_source", unknown_length)
  out = tmp_path / "tail"
  summary = ingest.run_ingest([ManifestRow("a", str(path))], str(out),
                              min_seconds=1.0, max_seconds=2.0,
                              num_workers=1, progress=False)
  assert [c["duration"] for c in _clips(out).values()] == [2.0, 2.0]
  assert summary["dropped_tail_s"] == 0.5


def test_interrupted_between_rename_and_journal(odd_audio, tmp_path):
  """A shard renamed but not journaled is replayed, not redone."""
  _, rows = odd_audio
  out = tmp_path / "out"
  os.makedirs(out)
  first = [rows["stereo44k"], rows["zero"]]
  ingest.ingest_shard(first, str(out / "clips-00000-of-00001-00000"
                                 ".array_record"), ingest.IngestOptions())
  (out / "clips-00000-of-00001-00001.array_record.tmp-123").write_bytes(b"x")
  (out / "clips-00000-of-00001-00007.array_record.index.json").write_text("{}")
  summary = ingest.run_ingest(first + [rows["low8k"]], str(out),
                              num_workers=1, progress=False)
  assert summary["rows_pending"] == 1 and summary["shards_written"] == 1
  assert sorted(_clips(out)) == ["low8k", "stereo44k"]
  _one_entry_per_row(out, ["stereo44k", "zero", "low8k"])
  assert sorted(os.listdir(out)) == sorted([
      ".ingest-00000-of-00001.lock",
      "clips-00000-of-00001-00000.array_record",
      "clips-00000-of-00001-00000.array_record.index.json",
      "clips-00000-of-00001-00001.array_record",
      "clips-00000-of-00001-00001.array_record.index.json",
      "quarantine-00000-of-00001.jsonl", "results-00000-of-00001.jsonl",
      "summary-00000-of-00001.json"])


def test_job_array_shards_split_the_rows(odd_audio, tmp_path):
  _, rows = odd_audio
  out = tmp_path / "out"
  summaries = [ingest.run_ingest(rows.values(), str(out), shard_index=i,
                                 num_shards=2, num_workers=1, progress=False)
               for i in range(2)]
  assert sum(s["results"] + s["quarantined"] for s in summaries) == len(rows)
  assert [s["rows_other_shards"] for s in summaries] == [
      summaries[1]["rows_pending"], summaries[0]["rows_pending"]]
  assert sorted(_clips(out)) == ["low8k", "mpeg", "six", "stereo44k",
                                 "vorbis"]
  _one_entry_per_row(out, list(rows))


def _many_clips(directory, n):
  """n hard links to one 4-second 44.1 kHz stereo file: cheap to make."""
  directory.mkdir()
  first = directory / "c000.wav"
  soundfile.write(first, _noise(4, 44100, 2), 44100)
  for i in range(1, n):
    os.link(first, directory / f"c{i:03d}.wav")
  return [f"c{i:03d}" for i in range(n)]


def _live_group_members(pgid):
  """Pids of the non-zombie processes in process group pgid, read from /proc."""
  live = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        stat = f.read()
    except OSError:
      continue
    # Fields after the parenthesised command: state, ppid, pgrp, ...
    state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
    if int(pgrp) == pgid and state != "Z":
      live.append(int(entry))
  return live


def test_killed_ingest_resumes_without_loss_or_duplicates(tmp_path):
  ids = _many_clips(tmp_path / "audio", 80)
  out = tmp_path / "out"
  script = textwrap.dedent(f"""
      from audiopt.data import ingest, manifests
      if __name__ == "__main__":
        rows = [manifests.ManifestRow(i, {str(tmp_path / "audio")!r} + "/" + i)
                for i in {ids!r}]
        ingest.run_ingest(rows, {str(out)!r}, shard_size=2, num_workers=2,
                          progress=False)
      """)
  proc = subprocess.Popen([sys.executable, "-c", script],
                          start_new_session=True)
  results = out / "results-00000-of-00001.jsonl"
  deadline = time.monotonic() + 60
  try:
    while time.monotonic() < deadline and proc.poll() is None:
      if results.exists() and results.read_bytes().count(b"\n") >= 4:
        break
      time.sleep(0.005)
    assert proc.poll() is None, "ingest finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Its workers die with it (PR_SET_PDEATHSIG or their parent watchdog).
    # Zombies do not count: a container whose PID 1 does not reap orphans
    # keeps them in the group.
    gone = time.monotonic() + 20
    while _live_group_members(proc.pid) and time.monotonic() < gone:
      time.sleep(0.05)
    assert not _live_group_members(proc.pid), (
        "ingest workers outlived their killed parent")
  finally:
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  done = results.read_bytes().count(b"\n")
  assert 4 <= done < len(ids)
  rows = [ManifestRow(i, str(tmp_path / "audio" / i)) for i in ids]
  summary = ingest.run_ingest(rows, str(out), shard_size=2, num_workers=1,
                              progress=False)
  assert summary["resumed"] >= done
  _one_entry_per_row(out, ids)
  source = clip_shards.ClipSource(str(out))
  got = [c["clip_id"] for c in source]
  assert sorted(got) == ids  # no clip missing, none twice
  assert not [n for n in os.listdir(out) if ".tmp" in n]


def test_process_pool(odd_audio, tmp_path):
  _, rows = odd_audio
  out = tmp_path / "out"
  summary = ingest.run_ingest(rows.values(), str(out), shard_size=4,
                              num_workers=2, progress=True)
  assert summary["shards_written"] == 3 and summary["shards_failed"] == 0
  assert summary["results"] == 5 and summary["quarantined"] == 6
  on_disk = json.loads((out / "summary-00000-of-00001.json").read_text())
  assert on_disk["results"] == 5


def test_beam_ingest_matches_local(odd_audio, tmp_path):
  pytest.importorskip("apache_beam")
  from audiopt.data import beam_pipeline  # pylint: disable=g-import-not-at-top
  _, rows = odd_audio
  items = list(rows.values()) + [ManifestError("m.csv:2", "m.csv:2: bad")]
  out = tmp_path / "beam"
  summary = beam_pipeline.run_ingest_pipeline(
      items, str(out), shard_size=3, beam_options=["--runner=DirectRunner"])
  assert summary["results"] == 5 and summary["quarantined"] == 7
  assert summary["shards_total"] == 4
  local = tmp_path / "local"
  ingest.run_ingest(items, str(local), num_workers=1, progress=False)
  beam_clips, local_clips = _clips(out), _clips(local)
  assert sorted(beam_clips) == sorted(local_clips)
  for clip_id, clip in beam_clips.items():
    assert clip["audio"] == local_clips[clip_id]["audio"]
  again = beam_pipeline.run_ingest_pipeline(
      items, str(out), shard_size=3, beam_options=["--runner=DirectRunner"])
  assert again["rows_submitted"] == 0
  _one_entry_per_row(out, list(rows) + ["m.csv:2"])


def test_options_are_checked(tmp_path):
  with pytest.raises(ValueError, match="long_clip_policy"):
    ingest.run_ingest([], str(tmp_path), long_clip_policy="cut")
  with pytest.raises(ValueError, match="min_seconds"):
    ingest.run_ingest([], str(tmp_path), min_seconds=5, max_seconds=2)
