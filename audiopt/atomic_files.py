"""Atomic file writes: a reader sees the old file or the whole new one.

Every writer goes through a temporary file beside the target, named
`<name>.tmp-<pid>-<thread>`, so that readers that pick files by extension
(`results*.jsonl`) never take one, and listings skip names holding ".tmp".
The file is synced to disk, then renamed over the target. A writer killed
mid-way leaves at most such a temporary file, never a partial target.
Writers that guess a format from the file name (matplotlib) must be told it.
"""

import contextlib
from collections.abc import Iterator
import json
import os
import threading
from typing import Any

TEMP_MARK = ".tmp"


def temporary_name(path: str) -> str:
  """The temporary sibling of `path` this process and thread write first."""
  return f"{path}{TEMP_MARK}-{os.getpid()}-{threading.get_native_id()}"


def fsync_path(path: str) -> None:
  """Flushes a file (or directory) to disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path to write; then moves it onto `path`.

  Args:
    path: the target file; its folder must exist.

  Yields:
    The temporary path (see `temporary_name`). After the body returns, that
    file is synced and renamed onto `path`; if the body raises, it is removed
    and `path` is left as it was.
  """
  tmp = temporary_name(path)
  try:
    yield tmp
    fsync_path(tmp)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes `data` (text as UTF-8, or bytes) to `path` atomically."""
  with atomic_path(path) as tmp:
    if isinstance(data, bytes):
      with open(tmp, "wb") as f:
        f.write(data)
    else:
      with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)


def write_json_atomic(path: str, obj: Any, *, remove_stale: bool = False,
                      **dump_options: Any) -> None:
  """Writes `obj` as JSON to `path` atomically.

  Args:
    path: the target file.
    obj: a JSON-serialisable value.
    remove_stale: first remove the temporaries of `path` that killed
      writers left; only where this process is the file's one writer.
    **dump_options: `json.dumps` options (indent, sort_keys, ...);
      `ensure_ascii` defaults to False, so text is stored as UTF-8.
  """
  dump_options.setdefault("ensure_ascii", False)
  text = json.dumps(obj, **dump_options)
  if remove_stale:
    remove_temporaries(os.path.dirname(path) or ".", os.path.basename(path))
  write_atomic(path, text)


def remove_temporaries(directory: str, name: str = "") -> list[str]:
  """Removes temporary files that killed writers left in `directory`.

  Call it only where no live process writes: a stage's own directory, or
  its own files, before it starts.

  Args:
    directory: the folder to clean (not recursive); may be missing.
    name: if set, only `<name>.tmp-*`, the temporaries of file `name`.

  Returns:
    The removed file names, sorted.
  """
  if not os.path.isdir(directory):
    return []
  mark = f"{TEMP_MARK}-"
  removed = []
  for entry in sorted(os.listdir(directory)):
    stale = entry.startswith(name + mark) if name else mark in entry
    path = os.path.join(directory, entry)
    if stale and os.path.isfile(path):
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
        removed.append(entry)
  return removed
