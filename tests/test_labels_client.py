"""The chat client and the caption stage against a real local HTTP server.

`ChatServer` speaks OpenAI chat completions on 127.0.0.1, answers from a
small deterministic backend and injects faults (HTTP 500/429/400/401,
timeouts, malformed and truncated bodies) chosen per request content and
attempt, so the outcome does not depend on thread timing.
"""

import base64
import hashlib
import http.server
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
import soundfile

from audiopt.audio import io as audio_io
from audiopt.data import demo_world
from audiopt.data import journal
from audiopt.labels import captioner as captioner_lib
from audiopt.labels import client as client_lib

KEY_ENV = "AUDIOPT_TEST_LLM_KEY"
SECRET = "sk-test-7f3a9c-SECRET-do-not-log"


class ChatServer:
  """A chat-completions server on 127.0.0.1 for tests.

  Args:
    backend: request body dict -> assistant text.
    faults: (request body, attempt number of this content, from 1) -> a
      fault name or None. Faults: "500", "503", "429", "400", "401-echo"
      (echoes the Authorization header back), "timeout", "malformed",
      "truncated", "no-choices", "length" (finish_reason "length").
    api_key: the bearer key required (401 otherwise); None: no check.
    delay_s: sleep before every answer.
    hang_s: how long a "timeout" fault sleeps.
  """

  def __init__(self, backend, *, faults=None, api_key=None, delay_s=0.0,
               hang_s=1.0):
    self.backend = backend
    self.faults = faults or (lambda body, attempt: None)
    self.api_key = api_key
    self.delay_s = delay_s
    self.hang_s = hang_s
    self.attempts = {}
    self.lock = threading.Lock()
    self.num_requests = 0
    self.paths = []
    outer = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):  # keep test output quiet
        pass

      def _send(self, status, payload, *, length=None, headers=()):
        data = payload if isinstance(payload, bytes) else json.dumps(
            payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length",
                         str(len(data) if length is None else length))
        for k, v in headers:
          self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

      def do_POST(self):  # pylint: disable=invalid-name
        body = json.loads(self.rfile.read(
            int(self.headers["Content-Length"])))
        auth = self.headers.get("Authorization", "")
        digest = hashlib.sha1(json.dumps(body["messages"],
                                         sort_keys=True).encode()).hexdigest()
        with outer.lock:
          outer.num_requests += 1
          outer.paths.append(self.path)
          attempt = outer.attempts[digest] = outer.attempts.get(digest, 0) + 1
        if outer.delay_s:
          time.sleep(outer.delay_s)
        if outer.api_key is not None and auth != f"Bearer {outer.api_key}":
          self._send(401, {"error": {"message": "bad key"}})
          return
        fault = outer.faults(body, attempt)
        if fault in ("500", "503", "400"):
          self._send(int(fault), {"error": {"message": f"injected {fault}"}})
        elif fault == "429":
          self._send(429, {"error": {"message": "slow down"}},
                     headers=[("Retry-After", "0")])
        elif fault == "401-echo":
          self._send(401, f"rejected header: {auth}".encode())
        elif fault == "timeout":
          time.sleep(outer.hang_s)
          self._send(200, _completion("too late"))
        elif fault == "malformed":
          self._send(200, b'{"choices": [{"message": {"content": "x"')
        elif fault == "truncated":
          data = json.dumps(_completion(outer.backend(body))).encode()
          self._send(200, data[:len(data) // 2], length=len(data))
          self.close_connection = True
        elif fault == "no-choices":
          self._send(200, {"object": "chat.completion"})
        else:
          text = outer.backend(body)
          finish = "length" if fault == "length" else "stop"
          self._send(200, _completion(text, finish))

    self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self._httpd.daemon_threads = True
    self._thread = threading.Thread(target=self._httpd.serve_forever,
                                    kwargs={"poll_interval": 0.02},
                                    daemon=True)

  @property
  def url(self):
    """Base URL, e.g. http://127.0.0.1:PORT/v1."""
    return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._httpd.shutdown()
    self._httpd.server_close()


def _completion(text, finish_reason="stop"):
  return {"id": "cmpl-test", "object": "chat.completion",
          "choices": [{"index": 0, "finish_reason": finish_reason,
                       "message": {"role": "assistant", "content": text}}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def audio_fingerprint(flac_or_wav: bytes) -> str:
  """crc32 of the 16-bit samples: the same for FLAC and WAV of one clip."""
  wav, _ = soundfile.read(io.BytesIO(flac_or_wav), dtype="int16")
  return f"{zlib.crc32(wav.tobytes()):08x}"


def caption_backend(body):
  """Qwen-style caption of the audio in the request (no text prompt)."""
  (message,) = body["messages"]
  (part,) = message["content"]
  assert part["type"] == "input_audio"
  data = base64.b64decode(part["input_audio"]["data"])
  info = soundfile.info(io.BytesIO(data))
  assert info.format == part["input_audio"]["format"].upper()
  fp = audio_fingerprint(data)
  return (f"The clip opens with a steady tone lasting {info.duration:.2f} "
          "seconds. It holds one pitch throughout, with no other sounds.\n\n"
          "The recording is clean and dry, with no reverberation.\n\n"
          f"In summary, a pure tone, fingerprint {fp}, in a dry studio.")


def tone_records(n, *, seconds=0.25):
  """n records of distinct sine tones as FLAC bytes."""
  t = np.arange(int(16000 * seconds)) / 16000
  return [{"clip_id": f"clip-{i:03d}", "domain": "sound", "source": "test",
           "audio": audio_io.encode_flac(
               0.3 * np.sin(2 * np.pi * (200 + 17 * i) * t))}
          for i in range(n)]


def make_client(url, **kw):
  kw.setdefault("max_concurrency", 4)
  kw.setdefault("timeout_s", 5.0)
  kw.setdefault("max_retries", 4)
  kw.setdefault("backoff_s", 0.01)
  kw.setdefault("max_backoff_s", 0.05)
  return client_lib.ChatClient(url, **kw)


@pytest.fixture
def api_key(monkeypatch):
  monkeypatch.setenv(KEY_ENV, SECRET)
  return SECRET


# ----------------------------------------------------------------------------
# The client.


def test_complete_posts_chat_completions(api_key):
  with ChatServer(lambda body: f"echo {body['temperature']}",
                  api_key=api_key) as server:
    client = make_client(server.url, api_key_env=KEY_ENV)
    out = client.complete([{"role": "user", "content": "hi"}], model="m",
                          temperature=0.5, top_k=None)
  assert out.text == "echo 0.5" and out.finish_reason == "stop"
  assert out.attempts == 1 and out.endpoint.endswith("/v1/chat/completions")
  assert server.paths == ["/v1/chat/completions"]


@pytest.mark.parametrize("fault", ["500", "503", "429", "timeout",
                                   "malformed", "truncated", "no-choices"])
def test_retryable_faults_are_retried(fault, api_key):
  faults = lambda body, attempt: fault if attempt <= 2 else None
  with ChatServer(lambda body: "fine", faults=faults, api_key=api_key,
                  hang_s=0.6) as server:
    client = make_client(server.url, api_key_env=KEY_ENV, timeout_s=0.3)
    out = client.complete([{"role": "user", "content": fault}], model="m")
  assert out.text == "fine" and out.attempts == 3


def test_final_error_names_endpoint_and_status():
  with ChatServer(lambda body: "x", faults=lambda b, a: "500") as server:
    client = make_client(server.url, max_retries=2)
    with pytest.raises(client_lib.ChatError) as info:
      client.complete([{"role": "user", "content": "x"}], model="m")
  err = info.value
  assert err.status == 500 and err.attempts == 3
  assert f"{server.url}/chat/completions" in str(err)
  assert "HTTP 500" in str(err) and "injected 500" in str(err)


def test_client_errors_are_not_retried():
  with ChatServer(lambda body: "x", faults=lambda b, a: "400") as server:
    client = make_client(server.url)
    with pytest.raises(client_lib.ChatError, match="HTTP 400") as info:
      client.complete([{"role": "user", "content": "x"}], model="m")
  assert info.value.attempts == 1 and server.num_requests == 1


def test_backoff_grows_exponentially_with_jitter():
  delays = []
  with ChatServer(lambda body: "x", faults=lambda b, a: "503") as server:
    client = client_lib.ChatClient(server.url, max_retries=4, backoff_s=1.0,
                                   max_backoff_s=5.0, seed=0,
                                   sleep=delays.append)
    with pytest.raises(client_lib.ChatError):
      client.complete([{"role": "user", "content": "x"}], model="m")
  caps = [1.0, 2.0, 4.0, 5.0]
  assert len(delays) == 4
  for delay, cap in zip(delays, caps):
    assert cap / 2 <= delay <= cap
  assert len(set(delays)) == 4


def _dead_url():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/v1"


def test_round_robin_and_failover():
  with ChatServer(lambda b: "a") as a, ChatServer(lambda b: "b") as b:
    client = make_client([a.url, b.url], max_concurrency=1)
    texts = [client.complete([{"role": "user", "content": str(i)}],
                             model="m").text for i in range(4)]
    assert texts == ["a", "b", "a", "b"]
    dead = _dead_url()
    client = make_client([dead, a.url], cooldown_s=60.0)
    outs = [client.complete([{"role": "user", "content": f"f{i}"}],
                            model="m") for i in range(5)]
  assert all(o.text == "a" for o in outs)
  # The refused endpoint cost one attempt, then sat out its cooldown.
  assert [o.attempts for o in outs] == [2, 1, 1, 1, 1]


def test_bounded_concurrency():
  active, peak, lock = [0], [0], threading.Lock()

  def backend(body):
    with lock:
      active[0] += 1
      peak[0] = max(peak[0], active[0])
    time.sleep(0.05)
    with lock:
      active[0] -= 1
    return "ok"

  with ChatServer(backend) as server:
    with make_client(server.url, max_concurrency=3) as client:
      futures = [client.submit([{"role": "user", "content": str(i)}],
                               model="m") for i in range(12)]
      assert [f.result().text for f in futures] == ["ok"] * 12
  assert peak[0] == 3


def test_api_key_never_logged_or_raised(api_key, caplog):
  caplog.set_level(logging.DEBUG)
  faults = lambda body, attempt: ("500" if attempt == 1 else "401-echo")
  with ChatServer(lambda body: "x", faults=faults) as server:
    client = make_client(server.url, api_key_env=KEY_ENV)
    with pytest.raises(client_lib.ChatError) as info:
      client.complete([{"role": "user", "content": "x"}], model="m")
  err = info.value
  assert err.status == 401 and "rejected header: Bearer ***" in str(err)
  texts = [str(err), repr(err), repr(client), str(vars(client)),
           caplog.text]
  assert all(SECRET not in t for t in texts)
  assert "retrying" in caplog.text  # the 500 was logged, without the key


def test_missing_key_variable_is_named_not_valued(monkeypatch):
  monkeypatch.delenv(KEY_ENV, raising=False)
  with pytest.raises(ValueError, match=KEY_ENV):
    client_lib.ChatClient("http://127.0.0.1:1/v1", api_key_env=KEY_ENV)


# ----------------------------------------------------------------------------
# Captioners and the caption stage.


def _demo_captions(n):
  out = []
  for i in range(n):
    rng = np.random.default_rng([7, i])
    scene = demo_world.sample_scene(rng, f"d{i}", duration_s=4.0)
    out.append(demo_world.caption_scene(scene, rng))
  return out


def test_strong_caption_on_demo_captions():
  for full, strong in _demo_captions(60):
    assert captioner_lib.strong_caption(full) == strong


QWEN_STYLE = [
    ("The audio opens in a busy urban street. Cars pass from left to right "
     "and a bus idles nearby.\n\nA man speaks in a relaxed, conversational "
     "tone with a General American accent.\n  \nIn summary, the clip is a "
     "field recording of a man talking on a busy city street with passing "
     "traffic.",
     "The clip is a field recording of a man talking on a busy city street "
     "with passing traffic."),
    ("**Overview**\nA solo piano plays a slow ballad in a minor key.\n\n"
     "**Acoustic environment**\n- Large hall reverb\n- Faint hiss\n\n"
     "**Summary:**\nOverall, a melancholic solo piano ballad in a "
     "reverberant concert hall.\n",
     "A melancholic solo piano ballad in a reverberant concert hall."),
    ("A dog barks twice. Birds chirp in the background. The wind rustles the "
     "leaves. Overall, this is an outdoor backyard scene with a barking dog "
     "and birdsong.",
     "This is an outdoor backyard scene with a barking dog and birdsong."),
    ("The recording begins with a click. A warm synthesizer pad swells "
     "slowly beneath the mix over several seconds. Then a deep male voice "
     "announces the next track on the late-night radio show.",
     "A warm synthesizer pad swells slowly beneath the mix over several "
     "seconds. Then a deep male voice announces the next track on the "
     "late-night radio show."),
    ('A host says "Welcome to the show." A jingle plays. In summary, a '
     "radio intro with a host and a jingle.",
     "A radio intro with a host and a jingle."),
    ("Para one.\r\n\r\nThe final summary paragraph.\r\n\r\n",
     "The final summary paragraph."),
]


@pytest.mark.parametrize("full,strong", QWEN_STYLE)
def test_strong_caption_on_qwen_style(full, strong):
  assert captioner_lib.strong_caption(full) == strong


def test_strong_caption_keeps_lead_in_when_asked():
  full = "Details.\n\nIn summary, a dog barks."
  assert captioner_lib.strong_caption(full, strip_lead_in=False) == \
      "In summary, a dog barks."
  assert captioner_lib.strong_caption("  \n\n ") == ""


def test_openai_captioner_sends_audio_only(api_key):
  seen = []

  def backend(body):
    seen.append(body)
    return caption_backend(body)

  records = tone_records(2)
  with ChatServer(backend, api_key=api_key) as server:
    client = make_client(server.url, api_key_env=KEY_ENV)
    flac = captioner_lib.OpenAICaptioner(client, model="qwen-captioner")
    wav = captioner_lib.OpenAICaptioner(client, preset="released_script",
                                        audio_format="wav", temperature=0.7)
    cap = flac.caption("clip-000", records[0]["audio"])
    cap_wav = wav.caption("clip-001", records[1]["audio"])
  assert seen[0]["model"] == "qwen-captioner"
  assert {k: seen[0][k] for k in ("temperature", "top_p", "max_tokens")} == \
      {"temperature": 0.6, "top_p": 0.95, "max_tokens": 8192}
  assert "top_k" not in seen[0]
  assert (seen[1]["temperature"], seen[1]["top_p"], seen[1]["top_k"]) == \
      (0.7, 0.9, 20)
  assert all(len(b["messages"]) == 1 for b in seen)  # no text prompt
  fp0 = audio_fingerprint(records[0]["audio"])
  assert cap.strong == f"A pure tone, fingerprint {fp0}, in a dry studio."
  assert cap.full.startswith("The clip opens")
  assert audio_fingerprint(records[1]["audio"]) in cap_wav.strong


def _stage_faults(body, attempt):
  """Per clip: a fault on early attempts chosen by the audio, some fatal."""
  data = body["messages"][0]["content"][0]["input_audio"]["data"]
  kind = zlib.crc32(data.encode()) % 9
  if kind == 0:
    return "500" if attempt <= 2 else None
  if kind == 1:
    return "429" if attempt == 1 else None
  if kind == 2:
    return "timeout" if attempt == 1 else None
  if kind == 3:
    return "malformed" if attempt == 1 else None
  if kind == 4:
    return "truncated" if attempt == 1 else None
  return None


def test_caption_stage_with_faults(tmp_path, api_key, caplog):
  caplog.set_level(logging.DEBUG)
  records = tone_records(24)
  records.append({"clip_id": "broken", "audio": b"not audio"})
  records.append({"clip_id": records[0]["clip_id"],  # a repeated record
                  "audio": records[0]["audio"]})
  with ChatServer(caption_backend, faults=_stage_faults, api_key=api_key,
                  hang_s=0.6) as server:
    client = make_client(server.url, api_key_env=KEY_ENV, timeout_s=0.4)
    cap = captioner_lib.OpenAICaptioner(client)
    summary = captioner_lib.run_caption_stage(
        records, str(tmp_path), cap, batch_size=8, progress=False)
    rows = list(journal.read_results(str(tmp_path)))
    quarantined = list(journal.read_quarantine(str(tmp_path)))
    # A rerun finds everything done and sends nothing.
    before = server.num_requests
    again = captioner_lib.run_caption_stage(records, str(tmp_path), cap,
                                            progress=False)
    assert server.num_requests == before
  assert summary["captioned"] == 24 and summary["failed"] == 1
  assert summary["failures"] == {"audio": 1}
  assert again["resumed"] == 25 and again["captioned"] == 0
  ids = [r["id"] for r in rows]
  assert sorted(ids) == [f"clip-{i:03d}" for i in range(24)]
  for row, record in zip(sorted(rows, key=lambda r: r["id"]), records):
    fp = audio_fingerprint(record["audio"])
    assert row["strong_caption"] == \
        f"A pure tone, fingerprint {fp}, in a dry studio."
    assert row["domain"] == "sound" and row["source"] == "test"
  assert [q["id"] for q in quarantined] == ["broken"]
  on_disk = "".join(open(os.path.join(tmp_path, f)).read()
                    for f in os.listdir(tmp_path))
  assert SECRET not in on_disk and SECRET not in caplog.text
  assert "retrying" in caplog.text


def test_caption_stage_quarantines_endpoint_errors_and_empty(tmp_path):
  records = tone_records(6)
  fps = [audio_fingerprint(r["audio"]) for r in records]

  def backend(body):
    text = caption_backend(body)
    return "   " if fps[1] in text else text

  def faults(body, attempt):
    data = base64.b64decode(
        body["messages"][0]["content"][0]["input_audio"]["data"])
    fp = audio_fingerprint(data)
    return {fps[0]: "503", fps[2]: "length"}.get(fp)

  with ChatServer(backend, faults=faults) as server:
    cap = captioner_lib.OpenAICaptioner(make_client(server.url,
                                                    max_retries=1))
    summary = captioner_lib.run_caption_stage(records, str(tmp_path), cap,
                                              progress=False)
  reasons = {q["id"]: q for q in journal.read_quarantine(str(tmp_path))}
  assert summary["failures"] == {"endpoint": 1, "empty": 1, "truncated": 1}
  assert reasons["clip-000"]["kind"] == "endpoint"
  assert "HTTP 503" in reasons["clip-000"]["reason"]
  assert server.url in reasons["clip-000"]["reason"]
  assert reasons["clip-001"]["kind"] == "empty"
  assert reasons["clip-002"]["kind"] == "truncated"
  assert summary["captioned"] == 3


def test_caption_stage_shards_partition_clips(tmp_path):
  records = tone_records(20)
  with ChatServer(caption_backend) as server:
    cap = captioner_lib.OpenAICaptioner(make_client(server.url))
    for shard in range(3):
      captioner_lib.run_caption_stage(records, str(tmp_path), cap,
                                      shard_index=shard, num_shards=3,
                                      progress=False)
  ids = [r["id"] for r in journal.read_results(str(tmp_path))]
  assert sorted(ids) == [r["clip_id"] for r in records]
  assert len(os.listdir(tmp_path)) == 9  # results, quarantine, summary x3


def test_checkpoint_captioner_batches_waveforms():
  calls = []

  def generate(waveforms):
    calls.append([w.shape for w in waveforms])
    return [f"A tone of {w.size} samples.\n\nA short tone." for w in
            waveforms]

  cap = captioner_lib.CheckpointCaptioner(generate, name="ckpt")
  records = tone_records(3)
  out = cap.caption_batch([(r["clip_id"], r["audio"]) for r in records] +
                          [("bad", b"xx")])
  assert calls == [[(4000,)] * 3]
  assert [o.strong for o in out[:3]] == ["A short tone."] * 3
  assert isinstance(out[3], captioner_lib.CaptionError)
  assert out[3].kind == "audio"
  failing = captioner_lib.CheckpointCaptioner(lambda w: ["only one"])
  errors = failing.caption_batch([(r["clip_id"], r["audio"])
                                  for r in records[:2]])
  assert all(e.kind == "model" for e in errors)


_KILLED_STAGE = """
import sys
import numpy as np
from audiopt.audio import io as audio_io
from audiopt.labels import captioner, client
url, stage_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = np.arange(4000) / 16000
records = [{"clip_id": f"clip-{i:03d}", "audio": audio_io.encode_flac(
    0.3 * np.sin(2 * np.pi * (200 + 17 * i) * t))} for i in range(n)]
c = client.ChatClient(url, api_key_env="%s", max_concurrency=2,
                      timeout_s=5.0, backoff_s=0.01)
captioner.run_caption_stage(records, stage_dir, captioner.OpenAICaptioner(c),
                            batch_size=2, progress=False)
""" % KEY_ENV


def _count_lines(stage_dir):
  path = os.path.join(stage_dir, "results-00000-of-00001.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    return f.read().count(b"\n")


def test_caption_stage_killed_and_rerun(tmp_path, api_key):
  n = 40
  stage_dir = str(tmp_path / "captions")
  env = {**os.environ, KEY_ENV: api_key}
  command = [sys.executable, "-c", _KILLED_STAGE, "", stage_dir, str(n)]
  with ChatServer(caption_backend, api_key=api_key, delay_s=0.02) as server:
    command[3] = server.url
    for target in (6, 18):
      proc = subprocess.Popen(command, env=env)
      deadline = time.monotonic() + 30
      while _count_lines(stage_dir) < target and proc.poll() is None:
        assert time.monotonic() < deadline, "stage made no progress"
        time.sleep(0.01)
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      assert _count_lines(stage_dir) < n, "killed too late to test resuming"
    subprocess.run(command, env=env, check=True, timeout=60)
  ids = [r["id"] for r in journal.read_results(stage_dir)]
  assert len(ids) == len(set(ids)) == n
  assert sorted(ids) == [f"clip-{i:03d}" for i in range(n)]
  assert not list(journal.read_quarantine(stage_dir))
