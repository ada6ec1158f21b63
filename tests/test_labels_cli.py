"""The labelling command line, stage after stage, as a user runs it."""

import json

import numpy as np
import soundfile

from audiopt.data import records
from audiopt.labels import cli
from test_labels_client import ChatServer, audio_fingerprint

_SOUNDS = {0: "A dog barks twice near a busy road with a car engine idling.",
           1: "A piano plays a slow melody with soft reverb in a small room.",
           2: "A man speaks calmly while rain falls on a window outside."}


def _backend(body):
  """Captions in the captioner's style, chosen by the clip's audio."""
  import base64  # pylint: disable=g-import-not-at-top
  data = base64.b64decode(body["messages"][0]["content"][0]["input_audio"]
                          ["data"])
  sound = _SOUNDS[int(audio_fingerprint(data), 16) % 3]
  return (f"{sound} The sound is steady throughout.\n\n"
          f"In summary, {sound[0].lower()}{sound[1:]}")


def _corpus(tmp_path):
  audio = tmp_path / "audio"
  audio.mkdir()
  rows = []
  for i in range(8):
    t = np.arange(int(16000 * (1.5 + 0.1 * i))) / 16000
    wav = 0.3 * np.sin(2 * np.pi * (220 + 31 * i) * t)
    soundfile.write(audio / f"c{i}.wav", wav, 16000)
    rows.append({"id": f"c{i}", "path": f"c{i}.wav", "source": "test"})
  (audio / "broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEfmt nonsense")
  rows.append({"id": "broken", "path": "broken.wav", "source": "test"})
  manifest = tmp_path / "manifest.jsonl"
  manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return manifest, audio


def test_stages_from_manifest_to_records(tmp_path):
  manifest, audio = _corpus(tmp_path)
  stages = tmp_path / "stages"
  ingest = ["--quiet", "ingest", f"--manifest={manifest}",
            f"--audio_root={audio}", f"--out={stages / 'ingest'}",
            "--workers=1"]
  summary = cli.main(ingest)
  assert summary["results"] == 8 and summary["quarantined"] == 1
  assert cli.main(ingest)["resumed"] == 9  # nothing done twice

  with ChatServer(_backend) as server:
    summary = cli.main(["--quiet", "caption", f"--ingest={stages / 'ingest'}",
                        f"--out={stages / 'caption'}",
                        f"--endpoint={server.url}", "--timeout_s=10"])
  assert summary["results"] == 8
  summary = cli.main(["--quiet", "tag", f"--captions={stages / 'caption'}",
                      f"--out={stages / 'tag'}", "--lexical"])
  assert summary["results"] == 8
  summary = cli.main(["vocab", f"--tags={stages / 'tag'}",
                      f"--out={stages / 'vocab'}", "--k=6", "--no_plot"])
  vocab_path = stages / "vocab" / "label_6.json"
  vocab = json.loads(vocab_path.read_text())
  assert len(vocab) == 6
  summary = cli.main(["--quiet", "records", f"--ingest={stages / 'ingest'}",
                      f"--captions={stages / 'caption'}",
                      f"--tags={stages / 'tag'}", f"--vocab={vocab_path}",
                      f"--data_dir={tmp_path / 'tfds'}", "--name=cli_records"])
  source = records.open_records(str(tmp_path / "tfds"), "cli_records", "train")
  rows = [source[i] for i in range(len(source))]
  assert len(rows) == summary["written"]["train"]
  assert len(rows) + sum(summary["dropped"].values()) == 8
  assert sorted(r["clip_id"] for r in rows) == sorted(
      {r["clip_id"] for r in rows})
  assert all(r["caption"] and len(r["tags"]) for r in rows)
  assert source.metadata["tag_names"] == [vocab[str(i)]
                                          for i in range(len(vocab))]


def test_caption_needs_one_backend(tmp_path):
  try:
    cli.main(["caption", "--ingest=x", f"--out={tmp_path}"])
  except SystemExit as e:
    assert "--endpoint" in str(e)
  else:
    raise AssertionError("caption without a backend did not fail")
