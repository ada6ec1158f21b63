r"""Kill loops: a pipeline stage SIGKILLed at random points, then restarted.

  python -m audiopt.tools.kill_loop --stage=ingest --trials=20
  python -m audiopt.tools.kill_loop --stage=caption --trials=20 --seed=3
  python -m audiopt.tools.kill_loop --stage=study --trials=20 \
      --workdir=/tmp/kill_study -- --config.eval.probe_epochs=3

Stages: ingest, caption, tag, vocab, records (the labelling stages of
`audiopt.labels.cli`, run through its `main` on a small synthesised corpus)
and study (`python -m audiopt.main --config=configs/demo.py:quick,study`).
Flags after `--` go to the study command.

For a stage, the tool builds the stage's inputs (WAV clips and a manifest,
then every upstream stage, each run to completion), runs the stage once
uninterrupted (the reference; its wall time is the stage's duration D),
then runs trials. A trial starts the stage in a fresh directory and
SIGKILLs it after a delay drawn uniformly from [0, D) by a seeded RNG: its
whole process group (ingest workers too), or with `--kill=process` its main
process alone, restarting at once while orphaned workers may still run. The
first start of a trial is repeated afresh until a kill lands (D shrinks to
the time of a fresh start that ended first: with warm caches a study start
is faster than the reference). The stage is then restarted in the same
directory, up to `--max_kills` times, each restart killed at a new random
delay unless it finishes first, and finally run to the end. Its output is
compared with the reference by content, order-insensitively: every id
exactly once, the same fields (journal entries, clips and their audio,
records, vocabulary files, results.csv rows).

The labelling stages run in children forked from this one process (the
stage code is imported once, no JAX backend and no threads here), so a trial
costs the stage's own time, not an interpreter start. The caption stage
talks to a deterministic chat-completions server in another forked process
(one clip in seven is refused with HTTP 400, so quarantine is exercised
too); the tag stage uses the offline lexical tagger. The study runs as a
subprocess per start (it needs JAX), sharing a persistent compilation cache
between starts.

Prints one JSON line per trial and a final summary line; exits with status 1
when any trial's output differs from the reference.
"""

from __future__ import annotations

import argparse
import base64
import collections
import csv
import hashlib
import importlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from audiopt import atomic_files

LABEL_STAGES = ("ingest", "caption", "tag", "vocab", "records")
STAGES = LABEL_STAGES + ("study",)
UPSTREAM = {"ingest": (), "caption": ("ingest",),
            "tag": ("ingest", "caption"),
            "vocab": ("ingest", "caption", "tag"),
            "records": ("ingest", "caption", "tag", "vocab")}
RECORDS_NAME = "kill_loop"
VOCAB_KS = (4, 8)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
STUDY_CONFIG = "configs/demo.py:quick,study"

_SOUNDS = (
    "A dog barks twice near a busy road while a car engine idles.",
    "A piano plays a slow melody with soft reverb in a small room.",
    "A man speaks calmly while rain falls on a window outside.",
    "An acoustic guitar strums chords as birds chirp in a park.",
    "A woman sings over a drum beat with a bass guitar in a studio.",
    "Wind blows through trees while footsteps crunch on gravel.",
)


# ----------------------------------------------------------------------------
# Inputs.


def make_corpus(directory: str, num_clips: int = 10) -> tuple[str, str]:
  """Writes short WAV clips and a JSONL manifest for the labelling stages.

  Besides `num_clips` clips of 1.2 to 2.1 s there are a 5 s clip (split into
  three chunks at max_seconds 2), a 0.5 s clip (too short), a broken file
  and a missing one, so the stages quarantine as well as keep.

  Args:
    directory: where to write `audio/` and `manifest.jsonl`.
    num_clips: ordinary clips.

  Returns:
    (manifest path, audio root).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  audio = os.path.join(directory, "audio")
  os.makedirs(audio, exist_ok=True)
  rows = []

  def clip(name, seconds, freq, labels):
    t = np.arange(int(16000 * seconds)) / 16000
    wav = 0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-0.3 * t)
    soundfile.write(os.path.join(audio, f"{name}.wav"), wav, 16000)
    rows.append({"id": name, "path": f"{name}.wav", "source": "kill_loop",
                 "labels": labels})

  for i in range(num_clips):
    clip(f"c{i:02d}", 1.2 + 0.1 * i, 220 + 37 * i,
         ["Dog", "Music", "Speech"][i % 3:i % 3 + 1 + i % 2])
  clip("long", 5.0, 330, ["Music"])
  clip("short", 0.5, 440, [])
  with open(os.path.join(audio, "broken.wav"), "wb") as f:
    f.write(b"RIFF\0\0\0\0WAVEfmt nonsense")
  rows.append({"id": "broken", "path": "broken.wav", "source": "kill_loop"})
  rows.append({"id": "missing", "path": "missing.wav", "source": "kill_loop"})
  manifest = os.path.join(directory, "manifest.jsonl")
  with open(manifest, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return manifest, audio


def caption_text(audio_bytes: bytes) -> str | None:
  """The fake captioner's answer for a clip's audio; None: refuse (400).

  Args:
    audio_bytes: the audio sent in the request.

  Returns:
    A caption in the captioner's style (a description, then a closing
    summary), chosen by the bytes' crc32; None for one clip in seven.
  """
  crc = zlib.crc32(audio_bytes)
  if crc % 7 == 0:
    return None
  sound = _SOUNDS[crc % len(_SOUNDS)]
  return (f"{sound} The sound is steady throughout.\n\n"
          f"In summary, {sound[0].lower()}{sound[1:]}")


def start_caption_server() -> tuple[int, str]:
  """Forks a process serving fake chat completions on 127.0.0.1.

  Returns:
    (server pid, base URL such as http://127.0.0.1:PORT/v1). The server
    dies with this process (PR_SET_PDEATHSIG, and a parent check).
  """
  import http.server  # pylint: disable=g-import-not-at-top
  read_end, write_end = os.pipe()
  parent = os.getpid()
  pid = os.fork()
  if pid:
    os.close(write_end)
    with os.fdopen(read_end) as f:
      port = int(f.readline())
    return pid, f"http://127.0.0.1:{port}/v1"
  try:
    os.close(read_end)
    os.setpgid(0, 0)
    _die_with_parent(parent)

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):
        pass

      def do_POST(self):  # pylint: disable=invalid-name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        part = body["messages"][0]["content"][0]
        text = caption_text(base64.b64decode(part["input_audio"]["data"]))
        if text is None:
          status, payload = 400, {"error": {"message": "refused"}}
        else:
          status, payload = 200, {
              "id": "cmpl-kill-loop", "object": "chat.completion",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant",
                                       "content": text}}]}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    class Server(http.server.ThreadingHTTPServer):
      daemon_threads = True

      def handle_error(self, request, client_address):
        pass  # a killed stage drops its connections

    server = Server(("127.0.0.1", 0), Handler)
    with os.fdopen(write_end, "w") as f:
      f.write(f"{server.server_address[1]}\n")
    server.serve_forever(poll_interval=0.05)
  finally:
    os._exit(1)  # pylint: disable=protected-access


def _die_with_parent(parent: int) -> None:
  """Makes this process die with `parent` (prctl, then a watchdog)."""
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass

  def watch():
    while os.getppid() == parent:
      time.sleep(0.5)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, daemon=True).start()


# ----------------------------------------------------------------------------
# Stages.


class Layout:
  """Where a run of the labelling stages reads and writes.

  Args:
    root: a directory holding one directory per stage (`records` is the
      TFDS data_dir).
    manifest: the manifest file.
    audio_root: the audio directory.
    endpoint: the caption server's base URL.
    workers: ingest worker processes.
    dirs: stage -> directory, for stages not under the root.
  """

  def __init__(self, root: str, manifest: str, audio_root: str,
               endpoint: str, workers: int = 1,
               dirs: dict[str, str] | None = None):
    self.root = root
    self.dirs = dict(dirs or {})
    self.manifest = manifest
    self.audio_root = audio_root
    self.endpoint = endpoint
    self.workers = workers

  def dir(self, stage: str) -> str:
    """The directory of `stage`: given in `dirs`, else under the root."""
    return self.dirs.get(stage) or os.path.join(self.root, stage)

  def argv(self, stage: str) -> list[str]:
    """The `audiopt.labels.cli` arguments running `stage` here."""
    d = self.dir
    if stage == "ingest":
      return ["--quiet", "ingest", f"--manifest={self.manifest}",
              f"--audio_root={self.audio_root}", f"--out={d('ingest')}",
              "--min_seconds=1.0", "--max_seconds=2.0", "--shard_size=2",
              f"--workers={self.workers}"]
    if stage == "caption":
      return ["--quiet", "caption", f"--ingest={d('ingest')}",
              f"--out={d('caption')}", f"--endpoint={self.endpoint}",
              "--timeout_s=20", "--batch_size=2", "--concurrency=2"]
    if stage == "tag":
      return ["--quiet", "tag", f"--captions={d('caption')}",
              f"--out={d('tag')}", "--lexical", "--batch_size=2"]
    if stage == "vocab":
      return ["vocab", f"--tags={d('tag')}", f"--out={d('vocab')}",
              "--k=" + ",".join(map(str, VOCAB_KS))]
    if stage == "records":
      return ["--quiet", "records", f"--ingest={d('ingest')}",
              f"--captions={d('caption')}", f"--tags={d('tag')}",
              f"--vocab={os.path.join(d('vocab'), 'label_8.json')}",
              f"--data_dir={d('records')}", f"--name={RECORDS_NAME}"]
    raise ValueError(f"not a labelling stage: {stage!r}")


def warm_imports(stage: str) -> None:
  """Imports what `stage` imports lazily, so forked children start warm.

  Args:
    stage: a labelling stage name.
  """
  names = ["audiopt.labels.cli", "audiopt.data.ingest",
           "audiopt.data.clip_shards", "audiopt.data.manifests",
           "audiopt.labels.captioner", "audiopt.labels.client",
           "audiopt.labels.tagger", "audiopt.labels.vocabulary"]
  if stage in ("vocab", "records"):
    names += ["matplotlib.figure", "matplotlib.backends.backend_agg"]
  if stage == "records":
    names += ["audiopt.data.records_stage", "tensorflow_datasets"]
  for name in names:
    importlib.import_module(name)
  if stage == "records":
    importlib.import_module("tensorflow_datasets").disable_progress_bar()


def cli_stage(layout: Layout, stage: str) -> Callable[[], None]:
  """A function running one labelling stage through the command line."""
  argv = layout.argv(stage)

  def run() -> None:
    from audiopt.labels import cli  # pylint: disable=g-import-not-at-top
    cli.main(argv)

  return run


# ----------------------------------------------------------------------------
# Processes.


class Child:
  """A started stage: a forked child or a subprocess, in its own group.

  Args:
    pid: its pid, also its process group id.
    popen: the `subprocess.Popen`, for a subprocess.
  """

  def __init__(self, pid: int, popen: subprocess.Popen | None = None):
    self.pid = pid
    self.popen = popen
    self.returncode: int | None = None

  def poll(self) -> int | None:
    """Its exit status (-signal when killed), None while it runs."""
    if self.returncode is None:
      if self.popen is not None:
        self.returncode = self.popen.poll()
      else:
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid:
          self.returncode = os.waitstatus_to_exitcode(status)
    return self.returncode

  def kill(self, group: bool = True) -> None:
    """SIGKILLs it, with its whole process group by default, and reaps it.

    Args:
      group: also its workers; False kills the stage's process alone (as
        the OOM killer would), leaving its workers to notice.
    """
    try:
      if group:
        os.killpg(self.pid, signal.SIGKILL)
      else:
        os.kill(self.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    self.wait()

  def wait(self) -> int:
    """Waits for it to exit; returns the exit status."""
    if self.returncode is None:
      if self.popen is not None:
        self.returncode = self.popen.wait()
      else:
        self.returncode = os.waitstatus_to_exitcode(
            os.waitpid(self.pid, 0)[1])
    return self.returncode


def fork_child(fn: Callable[[], None], log_path: str) -> Child:
  """Runs `fn` in a forked child with its own process group.

  Args:
    fn: what the child runs; its exit status is 0 when it returns, 1 when it
      raises (the traceback goes to the log).
    log_path: the child's stdout and stderr are appended here.

  Returns:
    The child.
  """
  pid = os.fork()
  if pid == 0:
    status = 1
    try:
      os.setpgid(0, 0)
      fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
      os.dup2(fd, 1)
      os.dup2(fd, 2)
      fn()
      status = 0
    except BaseException:  # pylint: disable=broad-exception-caught
      traceback.print_exc()
    finally:
      try:
        sys.stdout.flush()
        sys.stderr.flush()
      finally:
        os._exit(status)  # pylint: disable=protected-access
  try:
    os.setpgid(pid, pid)  # also here: a kill may come before the child's
  except (PermissionError, ProcessLookupError):
    pass  # the child has set it (and exec'd nothing) or is gone
  return Child(pid)


def run_killed(start: Callable[[], Child], delay_s: float, *,
               group: bool = True) -> tuple[bool, float]:
  """Starts a stage and SIGKILLs it after `delay_s` unless it ends first.

  Args:
    start: starts the stage.
    delay_s: seconds after the start.
    group: kill its process group (see `Child.kill`).

  Returns:
    (whether the kill landed, seconds it ran).

  Raises:
    RuntimeError: the stage failed on its own before the kill.
  """
  started = time.monotonic()
  child = start()
  deadline = started + delay_s
  while (left := deadline - time.monotonic()) > 0:
    if child.poll() is not None:
      break
    time.sleep(min(left, 0.002 if delay_s < 1 else 0.05))
  if child.poll() is None:
    child.kill(group)
    return True, time.monotonic() - started
  if child.returncode != 0:
    raise RuntimeError(f"stage exited with status {child.returncode} "
                       f"before it was killed")
  return False, time.monotonic() - started


def run_to_end(start: Callable[[], Child], timeout_s: float = 1200.0
               ) -> float:
  """Runs a stage to its end; returns its wall time in seconds.

  Raises:
    RuntimeError: it failed or outlived `timeout_s`.
  """
  started = time.monotonic()
  child = start()
  while child.poll() is None:
    if time.monotonic() - started > timeout_s:
      child.kill()
      raise RuntimeError(f"stage ran past {timeout_s} s")
    time.sleep(0.002 if time.monotonic() - started < 2 else 0.05)
  if child.returncode != 0:
    raise RuntimeError(f"stage exited with status {child.returncode}")
  return time.monotonic() - started


# ----------------------------------------------------------------------------
# Outputs, by content.


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()[:16]


def _journal_snapshot(directory: str, drop: Sequence[str] = ()
                      ) -> dict[str, Any]:
  """Results and quarantine rows of a journal directory, by kind and id."""
  from audiopt.data import journal  # pylint: disable=g-import-not-at-top
  rows = []
  if os.path.isdir(directory):
    rows = ([("result", r) for r in journal.read_results(directory)]
            + [("quarantine", r) for r in journal.read_quarantine(directory)])
  return {f"{kind}:{row['id']}": {k: v for k, v in row.items()
                                  if k not in drop}
          for kind, row in rows} | {
              "__ids__": [str(row["id"]) for _, row in rows]}


def _temporary_files(directory: str) -> list[str]:
  found = []
  for root, dirs, files in os.walk(directory):
    for name in files + dirs:
      if atomic_files.TEMP_MARK in name or "incomplete" in name:
        found.append(os.path.relpath(os.path.join(root, name), directory))
  return sorted(found)


def snapshot(stage: str, out: str) -> dict[str, Any]:
  """A labelling stage's output in `out`, as comparable content.

  Args:
    stage: the stage name.
    out: its directory (for records: the TFDS data_dir).

  Returns:
    {"items": {key: content}, "ids": every id as often as it occurs,
    "temporary": temporary files left behind}. Keys are "result:<id>",
    "quarantine:<id>", "clip:<clip_id>", "record:<split>:<clip_id>" or
    "file:<name>"; shard file names and record positions, which depend on
    how the work was cut by kills, are left out of the content.
  """
  items: dict[str, Any] = {}
  ids: list[str] = []
  if stage in ("ingest", "caption", "tag"):
    journal = _journal_snapshot(out, drop=("shard",))
    ids += journal.pop("__ids__")
    items.update(journal)
  if stage == "ingest":
    from audiopt.data import clip_shards  # pylint: disable=g-import-not-at-top
    for clip in clip_shards.ClipSource(out):
      audio = clip.pop("audio")
      key = f"clip:{clip['clip_id']}"
      ids.append(key)
      items[key] = {**{k: v for k, v in clip.items() if k != "index"},
                    "audio": _sha(audio)}
  elif stage == "vocab":
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
      if atomic_files.TEMP_MARK not in name:
        with open(os.path.join(out, name), "rb") as f:
          items[f"file:{name}"] = _sha(f.read())
  elif stage == "records":
    from audiopt.data import records  # pylint: disable=g-import-not-at-top
    journal = _journal_snapshot(os.path.join(
        out, "_records_stage", f"{RECORDS_NAME}-1.0.0"))
    ids += journal.pop("__ids__")
    items.update(journal)
    for split in ("train", "validation", "test"):
      try:
        source = records.open_records(out, RECORDS_NAME, split)
      except FileNotFoundError:
        continue
      items[f"metadata:{split}"] = source.metadata
      for i in range(len(source)):
        record = {k: (_sha(v) if isinstance(v, bytes) else
                      v.tolist() if hasattr(v, "tolist") else v)
                  for k, v in source[i].items()}
        key = f"record:{split}:{record['clip_id']}"
        ids.append(key)
        items[key] = record
  return {"items": items, "ids": ids, "temporary": _temporary_files(out)}


def compare(reference: dict[str, Any], got: dict[str, Any]) -> list[str]:
  """What differs between two snapshots (of `snapshot` or `study_snapshot`).

  Returns:
    One line per problem: an id duplicated, missing or extra, or an item
    whose content differs; empty when the outputs are the same.
  """
  problems = []
  counts = collections.Counter(got["ids"])
  problems += [f"duplicated: {k} x{n}" for k, n in sorted(counts.items())
               if n > 1]
  want, have = reference["items"], got["items"]
  problems += [f"missing: {k}" for k in sorted(set(want) - set(have))]
  problems += [f"extra: {k}" for k in sorted(set(have) - set(want))]
  for key in sorted(set(want) & set(have)):
    if not _same(want[key], have[key]):
      problems.append(f"differs: {key}: {want[key]!r} != {have[key]!r}")
  return problems


def _same(a: Any, b: Any, rtol: float = 1e-6) -> bool:
  if isinstance(a, float) or isinstance(b, float):
    try:
      return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-9)
    except (TypeError, ValueError):
      return False
  return a == b


def progress_of(stage: str, out: str) -> int:
  """How much output a (killed) stage left: lines or files, for reports."""
  if stage == "study":
    found = 0
    for _, _, files in os.walk(os.path.join(out, "results")):
      found += sum(f.endswith(".json") for f in files)
    return found
  if stage == "vocab":
    return len([n for n in os.listdir(out) if atomic_files.TEMP_MARK not in n]
               ) if os.path.isdir(out) else 0
  if stage == "records":
    out = os.path.join(out, "_records_stage", f"{RECORDS_NAME}-1.0.0")
  lines = 0
  if os.path.isdir(out):
    for name in os.listdir(out):
      if name.endswith(".jsonl"):
        with open(os.path.join(out, name), "rb") as f:
          lines += f.read().count(b"\n")
  return lines


# ----------------------------------------------------------------------------
# The study.


def study_command(workdir: str, extra: Sequence[str] = ()) -> list[str]:
  """The command of one study start in `workdir` (data written there)."""
  return [sys.executable, "-m", "audiopt.main", f"--config={STUDY_CONFIG}",
          f"--workdir={workdir}", *extra]


def start_study(workdir: str, extra: Sequence[str], log_path: str,
                cache_dir: str) -> Child:
  """Starts a study subprocess in its own session; returns it."""
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  with open(log_path, "ab") as log:
    popen = subprocess.Popen(study_command(workdir, extra), cwd=REPO,
                             env=env, stdout=log, stderr=log,
                             start_new_session=True)
  return Child(popen.pid, popen)


def study_snapshot(workdir: str) -> dict[str, Any]:
  """A study's results.csv as comparable content.

  Returns:
    The `snapshot` shape: key "row:<run>|<task>|<probe>|<metric>" -> the
    row's other columns, "value" as a float.
  """
  items, ids = {}, []
  path = os.path.join(workdir, "results.csv")
  if os.path.exists(path):
    with open(path, newline="", encoding="utf-8") as f:
      for row in csv.DictReader(f):
        key = "row:" + "|".join(row[c] for c in ("run", "task", "probe",
                                                   "metric"))
        ids.append(key)
        items[key] = {**row, "value": float(row["value"])}
  return {"items": items, "ids": ids, "temporary": []}


# ----------------------------------------------------------------------------
# The loop.


def kill_loop(stage: str, workdir: str, *, trials: int = 20, seed: int = 0,
              max_kills: int = 3, workers: int = 1, kill_group: bool = True,
              study_flags: Sequence[str] = (),
              report: Callable[[dict[str, Any]], None] = print
              ) -> dict[str, Any]:
  """Runs the kill loop of one stage (module doc).

  Args:
    stage: one of `STAGES`.
    workdir: scratch directory (its previous content is removed).
    trials: trials, each with at least one landed kill.
    seed: seeds the kill delays.
    max_kills: most kills per trial (the number is drawn from 1..max_kills).
    workers: ingest worker processes (more than 1: a process pool).
    kill_group: kill a start's process group; False: its main process
      only, restarting at once while its workers may still be alive.
    study_flags: extra flags of the study command.
    report: called with each trial's dict.

  Returns:
    Summary dict: "stage", "trials", "failed_trials", "kills" (landed),
    "kill_points" (how much output the killed starts had left: "none",
    "partial", "all"), "reference_s" (D), "reference_items", "temporary"
    (temporary files left in the trials' final outputs), "retries" (first
    starts that ended before their kill, redone afresh), "seed",
    "elapsed_s", "problems" (the first ones).

  Raises:
    ValueError: an unknown stage.
  """
  if stage not in STAGES:
    raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
  began = time.monotonic()
  rng = random.Random(seed)
  if os.path.exists(workdir):
    shutil.rmtree(workdir)
  os.makedirs(workdir)
  log_path = os.path.join(workdir, "children.log")
  server_pid = None
  try:
    if stage == "study":
      cache_dir = os.path.join(workdir, "jax_cache")

      def starter(out: str) -> Callable[[], Child]:
        return lambda: start_study(out, study_flags, log_path, cache_dir)

      def take(out: str) -> dict[str, Any]:
        return study_snapshot(out)
    else:
      warm_imports(stage)
      manifest, audio = make_corpus(os.path.join(workdir, "corpus"))
      if stage == "caption" or UPSTREAM[stage]:
        server_pid, endpoint = start_caption_server()
      else:
        endpoint = ""
      if threading.active_count() > 1:
        raise RuntimeError("kill_loop forks stages: no threads allowed here")
      reference = Layout(os.path.join(workdir, "reference"), manifest, audio,
                         endpoint, workers)
      for upstream in UPSTREAM[stage]:
        run_to_end(lambda u=upstream: fork_child(cli_stage(reference, u),
                                                 log_path))

      def layout(out: str) -> Layout:
        # Trials read the reference's upstream outputs and write their own.
        return Layout(reference.root, manifest, audio, endpoint, workers,
                      dirs={stage: out})

      def starter(out: str) -> Callable[[], Child]:
        return lambda: fork_child(cli_stage(layout(out), stage), log_path)

      def take(out: str) -> dict[str, Any]:
        return _in_child(lambda: snapshot(stage, out), log_path)

    ref_out = os.path.join(workdir, "reference", stage)
    duration = run_to_end(starter(ref_out))
    expected = take(ref_out)
    if not expected["items"]:
      raise RuntimeError(f"the uninterrupted {stage} run wrote nothing")
    summary = {"stage": stage, "trials": trials, "failed_trials": 0,
               "kills": 0, "kill_points": {"none": 0, "partial": 0,
                                           "all": 0},
               "reference_s": round(duration, 3),
               "reference_items": len(expected["items"]), "temporary": 0,
               "retries": 0, "seed": seed, "problems": []}
    full = progress_of(stage, ref_out)
    groups = []

    def tracked(start: Callable[[], Child]) -> Callable[[], Child]:
      def go() -> Child:
        child = start()
        groups.append(child.pid)
        return child
      return go

    for trial in range(trials):
      out = os.path.join(workdir, "trials", f"{trial:03d}")
      delays, points, retries = [], [], 0
      for attempt in range(max(1, rng.randint(1, max_kills))):
        for retry in range(20):
          delay = rng.uniform(0, duration)
          landed, ran = run_killed(tracked(starter(out)), delay,
                                   group=kill_group)
          if landed or attempt:
            break
          # A fresh start ended first: starts got faster than the reference
          # (warm caches), so later delays are drawn over this start's time.
          duration = min(duration, ran)
          shutil.rmtree(out, ignore_errors=True)
        retries += retry
        if not landed:
          break
        delays.append(round(delay, 4))
        done = progress_of(stage, out)
        points.append(done)
        key = "none" if done == 0 else "all" if done >= full else "partial"
        summary["kill_points"][key] += 1
      if landed or not delays:
        run_to_end(starter(out))
      got = take(out)
      problems = compare(expected, got)
      while groups:  # workers of starts killed alone, if any are left
        try:
          os.killpg(groups.pop(), signal.SIGKILL)
        except ProcessLookupError:
          pass
      summary["kills"] += len(delays)
      summary["temporary"] += len(got["temporary"])
      if problems:
        summary["failed_trials"] += 1
        summary["problems"] += [f"trial {trial}: {p}" for p in problems[:5]]
      summary["retries"] += retries
      report({"stage": stage, "trial": trial, "kill_delays_s": delays,
              "output_at_kills": points, "of": full, "ok": not problems,
              "problems": problems[:5], "temporary": got["temporary"]})
      shutil.rmtree(out, ignore_errors=True)
    summary["problems"] = summary["problems"][:20]
    summary["elapsed_s"] = round(time.monotonic() - began, 3)
    return summary
  finally:
    if server_pid is not None:
      try:
        os.killpg(server_pid, signal.SIGKILL)
        os.waitpid(server_pid, 0)
      except (ProcessLookupError, ChildProcessError):
        pass


def _in_child(fn: Callable[[], Any], log_path: str) -> Any:
  """Returns `fn()` computed in a forked child (keeps readers' threads out).

  Raises:
    RuntimeError: the child failed.
  """
  read_end, write_end = os.pipe()

  def run():
    os.close(read_end)
    data = json.dumps(fn()).encode()
    with os.fdopen(write_end, "wb") as f:
      f.write(data)

  child = fork_child(run, log_path)
  os.close(write_end)
  with os.fdopen(read_end, "rb") as f:
    data = f.read()
  if child.wait() != 0:
    raise RuntimeError(f"reading the output failed; see {log_path}")
  return json.loads(data)


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (module doc).

  Args:
    argv: arguments without the program name; after "--", study flags.

  Returns:
    The exit status: 0 when every trial matched the reference.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = []
  if "--" in argv:
    extra = argv[argv.index("--") + 1:]
    argv = argv[:argv.index("--")]
  parser = argparse.ArgumentParser(prog="python -m audiopt.tools.kill_loop",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--stage", required=True, choices=STAGES)
  parser.add_argument("--trials", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--max_kills", type=int, default=3)
  parser.add_argument("--workers", type=int, default=1,
                      help="ingest worker processes")
  parser.add_argument("--kill", choices=("group", "process"),
                      default="group",
                      help="kill the stage's process group, or its main "
                           "process alone (ingest workers then outlive it)")
  parser.add_argument("--workdir", default="",
                      help="scratch directory (default: a new temporary one)")
  parser.add_argument("--keep", action="store_true",
                      help="keep the workdir afterwards")
  args = parser.parse_args(argv)
  workdir = args.workdir
  made = not workdir
  if made:
    import tempfile  # pylint: disable=g-import-not-at-top
    workdir = tempfile.mkdtemp(prefix=f"kill_loop_{args.stage}_")

  def report(line):
    print(json.dumps(line, sort_keys=True), flush=True)

  try:
    summary = kill_loop(args.stage, workdir, trials=args.trials,
                        seed=args.seed, max_kills=args.max_kills,
                        workers=args.workers,
                        kill_group=args.kill == "group", study_flags=extra,
                        report=report)
  finally:
    if made and not args.keep:
      shutil.rmtree(workdir, ignore_errors=True)
  print(json.dumps({"summary": summary}, sort_keys=True), flush=True)
  return 1 if summary["failed_trials"] else 0


if __name__ == "__main__":
  sys.exit(main())
