"""An OpenAI-compatible chat-completions client for labelling at scale.

The captioner and the tagger talk to LLMs served by vLLM (or any server with
the OpenAI chat-completions API) through `ChatClient`:

- several endpoints, used in turn (round-robin); an endpoint that fails with a
  connection error or a timeout sits out for `cooldown_s` while the others
  take its share (fail-over), unless every endpoint is cooling down;
- bounded concurrency: `submit` runs requests on a pool of `max_concurrency`
  threads;
- a per-request timeout covering connect, wait and the whole body read;
- retries with exponential backoff and jitter on HTTP 408/409/425/429/5xx,
  timeouts, connection errors and malformed or truncated JSON bodies
  (honouring a `Retry-After` header up to the backoff cap); other HTTP errors
  (400, 401, 404, ...) fail at once since repeating them cannot help;
- the API key is read from the environment variable whose *name* is
  configured. It goes into the Authorization header only: never into logs,
  exceptions or repr (server text quoted in errors is scrubbed of it too).

Only the standard library is used (http.client), one connection per attempt:
an LLM request takes seconds, so connection reuse would buy nothing.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Mapping, Sequence

from absl import logging

Message = Mapping[str, Any]

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_MAX_QUOTED_BODY = 300
_READ_CHUNK = 1 << 16


class ChatError(RuntimeError):
  """A chat completion that failed for good (after retries where sensible).

  Attributes:
    endpoint: the endpoint of the last attempt (URL without credentials).
    status: its HTTP status, or None when no HTTP answer came (timeout,
      connection error).
    attempts: how many attempts were made.
    reason: what went wrong on the last attempt.
  """

  def __init__(self, endpoint: str, status: int | None, attempts: int,
               reason: str):
    answered = f"HTTP {status}" if status is not None else "no HTTP answer"
    super().__init__(f"chat completion failed after {attempts} attempt(s); "
                     f"last: {endpoint} ({answered}): {reason}")
    self.endpoint = endpoint
    self.status = status
    self.attempts = attempts
    self.reason = reason


class _AttemptError(Exception):
  """One failed attempt; `retryable` says whether another may succeed."""

  def __init__(self, reason: str, status: int | None = None, *,
               retryable: bool, retry_after_s: float | None = None,
               endpoint_down: bool = False):
    super().__init__(reason)
    self.reason = reason
    self.status = status
    self.retryable = retryable
    self.retry_after_s = retry_after_s
    self.endpoint_down = endpoint_down


@dataclasses.dataclass(frozen=True)
class ChatResponse:
  """The first choice of a chat completion.

  Attributes:
    text: the assistant message content ("" when the server gave none).
    finish_reason: "stop", "length" (cut at max_tokens), ... or None.
    endpoint: the endpoint that answered.
    attempts: attempts it took, 1 when the first succeeded.
    usage: the server's token usage dict (may be empty).
  """
  text: str
  finish_reason: str | None
  endpoint: str
  attempts: int
  usage: Mapping[str, Any]


def _display_url(url: str) -> str:
  """The URL with any user:password@ part removed."""
  parts = urllib.parse.urlsplit(url)
  netloc = parts.hostname or ""
  if parts.port:
    netloc += f":{parts.port}"
  return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _completions_url(endpoint: str) -> str:
  """`<base>/chat/completions` for a base URL such as http://h:8000/v1."""
  parts = urllib.parse.urlsplit(endpoint)
  if parts.scheme not in ("http", "https") or not parts.hostname:
    raise ValueError(f"endpoint {_display_url(endpoint)!r} is not an "
                     "http(s) URL")
  path = parts.path.rstrip("/")
  if not path.endswith("/chat/completions"):
    path += "/chat/completions"
  return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class _EndpointRing:
  """Round-robin over endpoints, skipping ones in cooldown when possible."""

  def __init__(self, urls: Sequence[str], cooldown_s: float):
    self._urls = list(urls)
    self._cooldown_s = cooldown_s
    self._down_until = [0.0] * len(urls)
    self._next = 0
    self._lock = threading.Lock()

  def pick(self) -> str:
    """Returns the next endpoint, preferring ones not cooling down."""
    with self._lock:
      now = time.monotonic()
      n = len(self._urls)
      for offset in range(n):
        i = (self._next + offset) % n
        if self._down_until[i] <= now:
          self._next = i + 1
          return self._urls[i]
      i = self._next % n  # all cooling down: keep rotating anyway
      self._next = i + 1
      return self._urls[i]

  def mark_down(self, url: str) -> None:
    """Puts `url` in cooldown."""
    with self._lock:
      self._down_until[self._urls.index(url)] = (
          time.monotonic() + self._cooldown_s)


class ChatClient:
  """OpenAI-compatible chat-completions client (see the module docstring).

  Args:
    endpoints: base URLs such as "http://127.0.0.1:8000/v1" (a URL already
      ending in /chat/completions is used as is).
    api_key_env: name of the environment variable holding the API key; None
      sends no Authorization header (vLLM without --api-key).
    max_concurrency: threads of the pool behind `submit`.
    timeout_s: limit for one attempt: connect, wait and read the body.
    max_retries: further attempts after the first, for retryable failures.
    backoff_s: delay before the first retry; doubles for each next one.
    max_backoff_s: cap of the delay (and of an honoured Retry-After).
    cooldown_s: how long an endpoint that timed out or refused a connection
      is skipped while other endpoints are available.
    seed: seeds the jitter (None: from the OS).
    sleep: the sleep function (tests pass a recorder).

  Raises:
    ValueError: no endpoints, a non-http(s) endpoint, bad numbers, or the
      named environment variable is unset or empty.
  """

  def __init__(self, endpoints: Sequence[str] | str, *,
               api_key_env: str | None = None, max_concurrency: int = 8,
               timeout_s: float = 600.0, max_retries: int = 5,
               backoff_s: float = 1.0, max_backoff_s: float = 60.0,
               cooldown_s: float = 30.0, seed: int | None = None,
               sleep: Callable[[float], None] = time.sleep):
    if isinstance(endpoints, str):
      endpoints = [endpoints]
    if not endpoints:
      raise ValueError("ChatClient needs at least one endpoint")
    if max_concurrency < 1 or timeout_s <= 0 or max_retries < 0:
      raise ValueError("max_concurrency must be >= 1, timeout_s > 0 and "
                       "max_retries >= 0")
    self._urls = [_completions_url(e) for e in endpoints]
    self._names = {u: _display_url(u) for u in self._urls}
    self._api_key_env = api_key_env
    if api_key_env is not None and not os.environ.get(api_key_env):
      raise ValueError(f"environment variable {api_key_env} (the API key) is "
                       "unset or empty")
    self.max_concurrency = max_concurrency
    self.timeout_s = float(timeout_s)
    self.max_retries = max_retries
    self.backoff_s = float(backoff_s)
    self.max_backoff_s = float(max_backoff_s)
    self._ring = _EndpointRing(self._urls, cooldown_s)
    self._rng = random.Random(seed)
    self._rng_lock = threading.Lock()
    self._sleep = sleep
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None
    self._pool_lock = threading.Lock()

  @property
  def endpoints(self) -> list[str]:
    """The chat-completions URLs, without credentials."""
    return [self._names[u] for u in self._urls]

  def __repr__(self) -> str:
    return (f"ChatClient(endpoints={self.endpoints}, "
            f"api_key_env={self._api_key_env!r}, "
            f"max_concurrency={self.max_concurrency})")

  def _api_key(self) -> str | None:
    if self._api_key_env is None:
      return None
    key = os.environ.get(self._api_key_env)
    if not key:
      raise ChatError("(none)", None, 0,
                      f"environment variable {self._api_key_env} (the API "
                      "key) is unset or empty")
    return key

  def _scrub(self, text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text

  def complete(self, messages: Sequence[Message], *, model: str,
               **params: Any) -> ChatResponse:
    """Runs one chat completion, retrying and failing over as configured.

    Args:
      messages: OpenAI chat messages ({"role": ..., "content": ...}).
      model: the served model name.
      **params: further request fields (temperature, top_p, max_tokens,
        top_k, response_format, ...); None values are left out.

    Returns:
      The first choice as a `ChatResponse`.

    Raises:
      ChatError: a non-retryable failure, or retries exhausted; it names the
        endpoint and the HTTP status of the last attempt.
    """
    body = {"model": model, "messages": list(messages)}
    body.update({k: v for k, v in params.items() if v is not None})
    data = json.dumps(body).encode("utf-8")
    key = self._api_key()
    attempts = 0
    while True:
      url = self._ring.pick()
      attempts += 1
      try:
        result = self._attempt(url, data, key)
      except _AttemptError as e:
        reason = self._scrub(e.reason, key)
        if e.endpoint_down:
          self._ring.mark_down(url)
        if not e.retryable or attempts > self.max_retries:
          raise ChatError(self._names[url], e.status, attempts,
                          reason) from None
        delay = self._backoff(attempts - 1, e.retry_after_s)
        logging.warning("chat attempt %d at %s failed (%s); retrying in "
                        "%.2f s", attempts, self._names[url], reason, delay)
        self._sleep(delay)
        continue
      text, finish_reason, usage = result
      return ChatResponse(text=text, finish_reason=finish_reason,
                          endpoint=self._names[url], attempts=attempts,
                          usage=usage)

  def submit(self, messages: Sequence[Message], *, model: str,
             **params: Any) -> concurrent.futures.Future:
    """Like `complete`, on the client's thread pool; returns a Future."""
    with self._pool_lock:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.max_concurrency, thread_name_prefix="chat")
      pool = self._pool
    return pool.submit(self.complete, messages, model=model, **params)

  def close(self) -> None:
    """Shuts the thread pool down, waiting for running requests."""
    with self._pool_lock:
      pool, self._pool = self._pool, None
    if pool is not None:
      pool.shutdown(wait=True)

  def __enter__(self) -> "ChatClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _backoff(self, retry: int, retry_after_s: float | None) -> float:
    """Exponential delay for retry number `retry` (0-based), with jitter."""
    cap = min(self.max_backoff_s, self.backoff_s * 2 ** retry)
    with self._rng_lock:
      delay = cap * (0.5 + 0.5 * self._rng.random())
    if retry_after_s is not None:
      delay = max(delay, min(retry_after_s, self.max_backoff_s))
    return delay

  def _attempt(self, url: str, data: bytes, key: str | None
               ) -> tuple[str, str | None, dict[str, Any]]:
    """One POST: (text, finish_reason, usage), or raises _AttemptError."""
    deadline = time.monotonic() + self.timeout_s
    parts = urllib.parse.urlsplit(url)
    conn_cls = (http.client.HTTPSConnection if parts.scheme == "https"
                else http.client.HTTPConnection)
    conn = conn_cls(parts.hostname, parts.port, timeout=self.timeout_s)
    headers = {"Content-Type": "application/json",
               "Accept": "application/json", "Connection": "close"}
    if key:
      headers["Authorization"] = f"Bearer {key}"
    try:
      conn.request("POST", parts.path, body=data, headers=headers)
      conn.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
      response = conn.getresponse()
      body = self._read_body(conn, response, deadline)
    except (socket.timeout, TimeoutError):
      raise _AttemptError(f"timed out after {self.timeout_s:g} s",
                          retryable=True, endpoint_down=True) from None
    except (ConnectionError, http.client.HTTPException, OSError) as e:
      raise _AttemptError(f"connection error: {type(e).__name__}: {e}",
                          retryable=True, endpoint_down=True) from None
    finally:
      conn.close()
    status = response.status
    if status != 200:
      retryable = status in _RETRYABLE_STATUS or status >= 500
      raise _AttemptError(_error_text(body), status, retryable=retryable,
                          retry_after_s=_retry_after(response))
    return _parse_completion(body, status)

  def _read_body(self, conn: http.client.HTTPConnection,
                 response: http.client.HTTPResponse, deadline: float) -> bytes:
    """Reads the whole body before `deadline`; raises on a truncated one."""
    chunks = []
    while True:
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        raise TimeoutError
      if conn.sock is not None:
        conn.sock.settimeout(remaining)
      chunk = response.read(_READ_CHUNK)
      if not chunk:
        break
      chunks.append(chunk)
    body = b"".join(chunks)
    expected = response.getheader("Content-Length")
    if expected is not None and expected.isdigit() and (
        len(body) != int(expected)):
      raise _AttemptError(f"truncated body: {len(body)} of {expected} bytes",
                          response.status, retryable=True)
    return body


def _retry_after(response: http.client.HTTPResponse) -> float | None:
  """Seconds from a numeric Retry-After header, else None."""
  value = response.getheader("Retry-After")
  try:
    return max(0.0, float(value)) if value is not None else None
  except ValueError:
    return None


def _error_text(body: bytes) -> str:
  """The server's error message (OpenAI error JSON or raw text), shortened."""
  text = body.decode("utf-8", errors="replace").strip()
  try:
    error = json.loads(text).get("error")
    if isinstance(error, dict) and error.get("message"):
      text = str(error["message"])
    elif isinstance(error, str):
      text = error
  except (ValueError, AttributeError):
    pass
  if len(text) > _MAX_QUOTED_BODY:
    text = text[:_MAX_QUOTED_BODY] + "..."
  return text or "(empty body)"


def _parse_completion(body: bytes, status: int
                      ) -> tuple[str, str | None, dict[str, Any]]:
  """Extracts the first choice from a 200 body; malformed bodies retry."""
  try:
    payload = json.loads(body)
    choice = payload["choices"][0]
    message = choice["message"]
    text = message.get("content") or ""
    if not isinstance(text, str):
      raise TypeError(f"content is {type(text).__name__}, not a string")
    usage = payload.get("usage") or {}
    return text, choice.get("finish_reason"), dict(usage)
  except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
    raise _AttemptError(f"malformed response body ({type(e).__name__}: {e})",
                        status, retryable=True) from None
