"""Readers of public audio manifests, yielding one common `ManifestRow`.

Every reader yields, per row of its file, either a `ManifestRow` (a clip to
ingest) or a `ManifestError` (a malformed row, naming its file and line, for
the ingest stage to quarantine); a reader never raises on bad rows, only on
a file it cannot open at all.

Formats, laid out as their official releases:

- Lhotse cut JSON lines (`.jsonl` / `.jsonl.gz`), as released with UTS: one
  MonoCut per line, `{"id", "start", "duration", "recording": {"id",
  "sources": [{"type": "file", "source": ...}], ...}, "supervisions": [{...,
  "custom": {"audio_tag": [...], "caption": "..."}}]}`. The released
  recording source names only the source data set (e.g. "audioset"), not a
  file, so the local file is found with a path rule (below) applied to
  `audio_root`; a source that already is a path (holds "/" or ends in an
  audio extension, e.g. after the user rewrote the manifests) is used as it
  is (joined to `audio_root` when relative).
- AudioCaps CSV (`audiocap_id,youtube_id,start_time,caption`): validation
  and test list five captions per clip, one per row; they are grouped into
  one row (`captions` holds all, `caption` the first).
- Clotho CSV (`file_name,caption_1,...,caption_5`).
- AudioSet segment CSV (`balanced_train_segments.csv` ...): "#" comment
  lines, then `YTID, start_seconds, end_seconds, positive_labels` with
  ontology ids (`"/m/09x0r,/t/dd00088"`); with `class_labels_indices.csv`
  (`index,mid,display_name`) the labels become display names.
- Plain JSON lines or CSV: `path` (required, relative to `audio_root` when
  not absolute), optional `id`, `caption`, `tags`, `labels`, `source`,
  `domain`, `start` and `duration` (seconds). In CSV, tags are separated by
  ";" or ",", labels by ";" (AudioSet names hold commas).

Path rules. Published YouTube-based sets (AudioSet, AudioCaps) ship ids, not
audio, and people download them under different names, so those readers
take `path_template`, a `str.format` template over the row's fields (listed
per reader), relative to `audio_root`. A template without an extension
matches the first existing `<path>.<ext>` for `AUDIO_EXTENSIONS` at ingest
time (`resolve_audio_path`). Downloaded YouTube clips are usually already
cut to the 10-second segment; with `segment_in_file=True` the segment's start
and length in the file are taken from the row instead (for whole videos).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".opus", ".mp3", ".m4a", ".aac",
                    ".webm", ".mp4", ".mkv", ".aiff", ".aif", ".au")
PathRule = str | Callable[[Mapping[str, Any]], str]


@dataclasses.dataclass(frozen=True)
class ManifestRow:
  """One clip to ingest.

  Attributes:
    clip_id: unique id of the clip within its corpus.
    path: the audio file (local path; may lack an extension, see
      `resolve_audio_path`).
    start_s: offset of the clip in the file, seconds.
    duration_s: length of the clip, seconds; None: to the end of the file.
    caption: the manifest's caption ("" if none); the first of `captions`.
    tags: free-form tags (e.g. UTS `audio_tag`).
    labels: weak class labels (e.g. AudioSet display names or ids).
    source: source corpus name, e.g. "audiocaps".
    row_ref: "file:line" of the row, for error messages.
    captions: every caption the manifest gives the clip.
    domain: speech, music, sound or mixed when the manifest says; else "".
  """
  clip_id: str
  path: str
  start_s: float = 0.0
  duration_s: float | None = None
  caption: str = ""
  tags: tuple[str, ...] = ()
  labels: tuple[str, ...] = ()
  source: str = ""
  row_ref: str = ""
  captions: tuple[str, ...] = ()
  domain: str = ""


@dataclasses.dataclass(frozen=True)
class ManifestError:
  """A manifest row that cannot become a `ManifestRow`.

  Attributes:
    row_ref: "file:line" of the row.
    reason: what is wrong, with `row_ref` in front.
    clip_id: the row's clip id when it could be read, else None.
  """
  row_ref: str
  reason: str
  clip_id: str | None = None

  @property
  def item_id(self) -> str:
    """The id to quarantine the row under: its clip id, else `row_ref`."""
    return self.clip_id or self.row_ref


ManifestItem = ManifestRow | ManifestError


class _RowError(ValueError):
  """A bad field; carries the clip id when known."""

  def __init__(self, message: str, clip_id: str | None = None):
    super().__init__(message)
    self.clip_id = clip_id


# ----------------------------------------------------------------------------
# Paths.


def looks_like_path(text: str) -> bool:
  """Whether a manifest string names a file rather than a data set."""
  return "/" in text or os.sep in text or text.lower().endswith(
      AUDIO_EXTENSIONS)


def _join(audio_root: str | None, path: str) -> str:
  """`path` under `audio_root` unless absolute or no root is given."""
  if audio_root is None or os.path.isabs(path):
    return path
  return os.path.join(audio_root, path)


def _apply_rule(rule: PathRule, fields: Mapping[str, Any],
                audio_root: str | None) -> str:
  """Formats a path template (or calls a rule) and joins it to the root."""
  try:
    path = rule(fields) if callable(rule) else rule.format(**fields)
  except (KeyError, IndexError, ValueError) as e:
    raise _RowError(f"path rule {rule!r} failed: {type(e).__name__}: {e} "
                    f"(fields: {sorted(fields)})") from None
  return _join(audio_root, os.fspath(path))


def resolve_audio_path(path: str) -> str:
  """Finds the file a manifest path means.

  Args:
    path: a path, possibly without its extension.

  Returns:
    `path` if it exists or has a known audio extension; otherwise the first
    existing `path + ext` for ext in `AUDIO_EXTENSIONS`; otherwise `path`
    (so the caller reports it missing).
  """
  if os.path.exists(path) or path.lower().endswith(AUDIO_EXTENSIONS):
    return path
  for ext in AUDIO_EXTENSIONS:
    if os.path.exists(path + ext):
      return path + ext
  return path


# ----------------------------------------------------------------------------
# Shared helpers.


def _open_text(path: str):
  """Opens a text file, gunzipping `.gz` files."""
  if path.endswith(".gz"):
    return gzip.open(path, "rt", encoding="utf-8", newline="")
  return open(path, "r", encoding="utf-8", newline="")


def _lines(path: str) -> Iterator[tuple[int, str | ManifestError]]:
  """Yields (line number, line) and, if reading fails, one error last."""
  ref = path
  number = 0
  try:
    with _open_text(path) as f:
      for number, line in enumerate(f, 1):
        yield number, line
  except (OSError, EOFError, UnicodeDecodeError) as e:
    # A corrupt gzip stream or bad bytes: the rest of the file is lost.
    ref = f"{path}:{number + 1}"
    yield number + 1, ManifestError(
        ref, f"{ref}: unreadable from here on: {type(e).__name__}: {e}")


def _float(value: Any, name: str, *, allow_none: bool = False
           ) -> float | None:
  """Parses a non-negative finite number of seconds."""
  if value is None or (isinstance(value, str) and not value.strip()):
    if allow_none:
      return None
    raise _RowError(f"missing {name}")
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise _RowError(f"{name} is not a number: {value!r}") from None
  if not number >= 0 or number == float("inf"):
    raise _RowError(f"{name} must be a finite number >= 0, got {value!r}")
  return number


def _words(value: Any, name: str, separators: str) -> tuple[str, ...]:
  """A list of strings from a list or a separated string."""
  if value is None:
    return ()
  if isinstance(value, str):
    parts = re.split(f"[{re.escape(separators)}]", value)
  elif isinstance(value, (list, tuple)):
    if not all(isinstance(v, str) for v in value):
      raise _RowError(f"{name} must be strings, got {value!r}")
    parts = value
  else:
    raise _RowError(f"{name} must be a list or a string, got {value!r}")
  return tuple(p.strip() for p in parts if p.strip())


def _text(value: Any, name: str) -> str:
  if value is None:
    return ""
  if not isinstance(value, str):
    raise _RowError(f"{name} must be a string, got {value!r}")
  return value.strip()


def _csv_rows(path: str, *, skip_comments: bool = False
              ) -> Iterator[tuple[int, list[str] | ManifestError]]:
  """Yields (line number, fields) of a CSV file, or errors.

  Line numbers are the file's (a quoted field spanning lines counts from its
  first line). Spaces after commas are skipped, as AudioSet writes them.
  """
  pending: list[str] = []
  first = 0
  for number, line in _lines(path):
    if isinstance(line, ManifestError):
      yield number, line
      return
    if not pending:
      if not line.strip() or (skip_comments and line.lstrip().startswith("#")):
        continue
      first = number
    pending.append(line)
    text = "".join(pending)
    if text.count('"') % 2:  # a quoted field goes on on the next line
      continue
    pending = []
    try:
      fields = next(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as e:
      yield first, ManifestError(f"{path}:{first}",
                                 f"{path}:{first}: bad CSV: {e}")
      continue
    yield first, fields
  if pending:
    yield first, ManifestError(f"{path}:{first}",
                               f"{path}:{first}: unterminated quoted field")


def _dict_rows(path: str, required: Sequence[str]
               ) -> Iterator[tuple[str, dict[str, str] | ManifestError]]:
  """Yields (row_ref, {column: value}) of a CSV with a header line."""
  header = None
  for number, fields in _csv_rows(path):
    ref = f"{path}:{number}"
    if isinstance(fields, ManifestError):
      yield ref, fields
      continue
    if header is None:
      header = [h.strip().lstrip("\ufeff") for h in fields]
      missing = [c for c in required if c not in header]
      if missing:
        yield ref, ManifestError(ref, f"{ref}: header {header} lacks "
                                 f"columns {missing}")
        return
      continue
    if len(fields) != len(header):
      yield ref, ManifestError(ref, f"{ref}: {len(fields)} fields, the "
                               f"header has {len(header)}")
      continue
    yield ref, dict(zip(header, fields))


def _error(ref: str, e: Exception) -> ManifestError:
  return ManifestError(ref, f"{ref}: {e}", getattr(e, "clip_id", None))


# ----------------------------------------------------------------------------
# Lhotse cuts (UTS).


def read_lhotse_cuts(path: str, *, audio_root: str | None = None,
                     path_template: PathRule = "{source}/{recording_id}",
                     source: str | None = None) -> Iterator[ManifestItem]:
  """Reads Lhotse MonoCut JSON lines as released with UTS.

  Args:
    path: the manifest, `.jsonl` or `.jsonl.gz`.
    audio_root: directory the local audio lives under.
    path_template: where a cut's audio is, relative to `audio_root`, when the
      recording source is a data set name; fields: `id` (cut id),
      `recording_id`, `source` (the recording source string). The default
      expects `<audio_root>/<source>/<recording_id>.<ext>`.
    source: source corpus name of every row; None: the recording source
      when it is a data set name, else "".

  Yields:
    `ManifestRow` per cut (start and duration from the cut; tags from
    `custom.audio_tag`, a list or a ";"/","-joined string; caption from
    `custom.caption`), or `ManifestError`.
  """
  for number, line in _lines(path):
    ref = f"{path}:{number}"
    if isinstance(line, ManifestError):
      yield line
      return
    if not line.strip():
      continue
    try:
      yield _cut_row(line, ref, audio_root, path_template, source)
    except (_RowError, ValueError, TypeError) as e:
      yield _error(ref, e)


def _cut_row(line: str, ref: str, audio_root: str | None,
             path_template: PathRule, source: str | None) -> ManifestRow:
  """One cut line to a row; raises _RowError/ValueError on bad fields."""
  try:
    cut = json.loads(line)
  except json.JSONDecodeError as e:
    raise _RowError(f"not a JSON line: {e}") from None
  if not isinstance(cut, dict):
    raise _RowError(f"expected a JSON object, got {type(cut).__name__}")
  cut_id = cut.get("id")
  if not isinstance(cut_id, str) or not cut_id.strip():
    raise _RowError(f"cut has no string id: {cut_id!r}")
  try:
    recording = cut["recording"]
    rec_source = recording["sources"][0]["source"]
    recording_id = str(recording.get("id", cut_id))
  except (KeyError, IndexError, TypeError):
    raise _RowError("cut has no recording.sources[0].source",
                    cut_id) from None
  sups = cut.get("supervisions") or [{}]
  sup = sups[0] if isinstance(sups[0], dict) else {}
  custom = {**(sup.get("custom") or {}), **(cut.get("custom") or {})}
  try:
    tags = _words(custom.get("audio_tag", sup.get("audio_tag")),
                  "audio_tag", ";,")
    caption = _text(custom.get("caption", sup.get("caption")), "caption")
    start = _float(cut.get("start", 0.0), "start")
    duration = _float(cut.get("duration"), "duration", allow_none=True)
    rec_source = _text(rec_source, "recording source")
    if looks_like_path(rec_source):
      local, name = _join(audio_root, rec_source), ""
    else:
      local = _apply_rule(path_template,
                          {"id": cut_id, "recording_id": recording_id,
                           "source": rec_source}, audio_root)
      name = rec_source
  except _RowError as e:
    raise _RowError(str(e), cut_id) from None
  return ManifestRow(
      clip_id=cut_id, path=local, start_s=start, duration_s=duration,
      caption=caption, tags=tags, source=source if source is not None else name,
      row_ref=ref, captions=(caption,) if caption else ())


# ----------------------------------------------------------------------------
# AudioCaps, Clotho, AudioSet.


def read_audiocaps_csv(path: str, *, audio_root: str | None = None,
                       path_template: PathRule = "{youtube_id}",
                       segment_in_file: bool = False,
                       segment_seconds: float = 10.0,
                       source: str = "audiocaps") -> Iterator[ManifestItem]:
  """Reads an AudioCaps CSV (train.csv, val.csv, test.csv).

  Rows of one clip (same youtube_id and start_time) are merged, whatever
  their order; the clip id is the youtube id, or `<youtube_id>_<start>` when
  one video holds several clips. The file is read whole (AudioCaps files
  are small) so that grouping does not depend on row order.

  Args:
    path: the CSV file.
    audio_root: directory of the downloaded clips.
    path_template: fields `youtube_id`, `start_time` (as written),
      `start_ms` (int), `audiocap_id` (of the first row).
    segment_in_file: the files are whole videos: take the segment at
      start_time, `segment_seconds` long; False: the files are the clips.
    segment_seconds: AudioCaps segments are 10 s.
    source: source corpus name.

  Yields:
    `ManifestRow` per clip (captions: all its captions, in row order) or
    `ManifestError`.
  """
  groups: dict[tuple[str, float], dict[str, Any]] = {}
  for ref, row in _dict_rows(path, ("youtube_id", "start_time", "caption")):
    if isinstance(row, ManifestError):
      yield row
      continue
    try:
      ytid = row["youtube_id"].strip()
      if not ytid:
        raise _RowError("empty youtube_id")
      start = _float(row["start_time"], "start_time")
    except _RowError as e:
      yield _error(ref, e)
      continue
    group = groups.setdefault((ytid, start), {
        "ref": ref, "start_text": row["start_time"].strip(),
        "audiocap_id": row.get("audiocap_id", "").strip(), "captions": []})
    if row["caption"].strip():
      group["captions"].append(row["caption"].strip())
  per_video: dict[str, int] = {}
  for ytid, _ in groups:
    per_video[ytid] = per_video.get(ytid, 0) + 1
  for (ytid, start), group in groups.items():
    clip_id = ytid if per_video[ytid] == 1 else f"{ytid}_{round(start * 1000)}"
    try:
      local = _apply_rule(path_template, {
          "youtube_id": ytid, "start_time": group["start_text"],
          "start_ms": round(start * 1000),
          "audiocap_id": group["audiocap_id"]}, audio_root)
    except _RowError as e:
      yield ManifestError(group["ref"], f"{group['ref']}: {e}", clip_id)
      continue
    captions = tuple(group["captions"])
    yield ManifestRow(
        clip_id=clip_id, path=local,
        start_s=start if segment_in_file else 0.0,
        duration_s=segment_seconds if segment_in_file else None,
        caption=captions[0] if captions else "", source=source,
        row_ref=group["ref"], captions=captions)


def read_clotho_csv(path: str, *, audio_root: str | None = None,
                    source: str = "clotho") -> Iterator[ManifestItem]:
  """Reads a Clotho captions CSV (`clotho_captions_<split>.csv`).

  Args:
    path: the CSV file, columns file_name, caption_1 ... caption_5.
    audio_root: the split's audio directory (e.g. `development/`).
    source: source corpus name.

  Yields:
    `ManifestRow` per file (clip id: the file name without extension) or
    `ManifestError`.
  """
  for ref, row in _dict_rows(path, ("file_name", "caption_1")):
    if isinstance(row, ManifestError):
      yield row
      continue
    name = row["file_name"].strip()
    if not name:
      yield ManifestError(ref, f"{ref}: empty file_name")
      continue
    keys = sorted((k for k in row if re.fullmatch(r"caption_\d+", k)),
                  key=lambda k: int(k.split("_")[1]))
    captions = tuple(row[k].strip() for k in keys if row[k].strip())
    yield ManifestRow(
        clip_id=os.path.splitext(name)[0], path=_join(audio_root, name),
        caption=captions[0] if captions else "", source=source, row_ref=ref,
        captions=captions)


def read_class_labels(path: str) -> list[tuple[str, str]]:
  """Reads AudioSet's `class_labels_indices.csv`.

  Args:
    path: CSV with header `index,mid,display_name`.

  Returns:
    [(mid, display_name)] in index order (index i at position i).

  Raises:
    ValueError: a malformed file, naming the line.
  """
  out: dict[int, tuple[str, str]] = {}
  for ref, row in _dict_rows(path, ("index", "mid", "display_name")):
    if isinstance(row, ManifestError):
      raise ValueError(row.reason)
    try:
      out[int(row["index"])] = (row["mid"].strip(),
                                row["display_name"].strip())
    except ValueError:
      raise ValueError(f"{ref}: index is not an integer: "
                       f"{row['index']!r}") from None
  if sorted(out) != list(range(len(out))):
    raise ValueError(f"{path}: indices are not 0..{len(out) - 1}")
  return [out[i] for i in range(len(out))]


def read_audioset_csv(path: str, *, audio_root: str | None = None,
                      path_template: PathRule = "{ytid}",
                      class_labels_path: str | None = None,
                      segment_in_file: bool = False,
                      source: str = "audioset") -> Iterator[ManifestItem]:
  """Reads an AudioSet segment CSV (balanced/unbalanced train, eval).

  Args:
    path: the CSV file ("#" comment lines, then `YTID, start_seconds,
      end_seconds, positive_labels`).
    audio_root: directory of the downloaded segments.
    path_template: fields `ytid`, `start_seconds`, `end_seconds` (as
      written), `start_ms`, `end_ms` (ints). Common download layouts:
      "{ytid}", "Y{ytid}", "{ytid}_{start_ms}_{end_ms}".
    class_labels_path: `class_labels_indices.csv`; given, labels are display
      names and an unknown ontology id makes the row an error; None: labels
      stay ontology ids.
    segment_in_file: the files are whole videos: take [start, end) from the
      row; False: the files are the segments.
    source: source corpus name.

  Yields:
    `ManifestRow` per segment (clip id: the YTID) or `ManifestError`.
  """
  names = (dict(read_class_labels(class_labels_path))
           if class_labels_path else None)
  for number, fields in _csv_rows(path, skip_comments=True):
    ref = f"{path}:{number}"
    if isinstance(fields, ManifestError):
      yield fields
      continue
    if fields and fields[0].strip() == "YTID":
      continue  # a header line that is not commented out
    ytid = fields[0].strip() if fields else ""
    try:
      if len(fields) != 4:
        raise _RowError(f"{len(fields)} fields, expected 4 (YTID, "
                        "start_seconds, end_seconds, positive_labels)",
                        ytid or None)
      if not ytid:
        raise _RowError("empty YTID")
      start = _float(fields[1], "start_seconds")
      end = _float(fields[2], "end_seconds")
      if end <= start:
        raise _RowError(f"end_seconds {end} <= start_seconds {start}")
      mids = _words(fields[3], "positive_labels", ",")
      if names is not None:
        unknown = [m for m in mids if m not in names]
        if unknown:
          raise _RowError(f"labels {unknown} not in {class_labels_path}")
        labels = tuple(names[m] for m in mids)
      else:
        labels = mids
      local = _apply_rule(path_template, {
          "ytid": ytid, "start_seconds": fields[1].strip(),
          "end_seconds": fields[2].strip(), "start_ms": round(start * 1000),
          "end_ms": round(end * 1000)}, audio_root)
    except _RowError as e:
      yield ManifestError(ref, f"{ref}: {e}", e.clip_id or ytid or None)
      continue
    yield ManifestRow(
        clip_id=ytid, path=local, start_s=start if segment_in_file else 0.0,
        duration_s=end - start if segment_in_file else None, labels=labels,
        source=source, row_ref=ref)


# ----------------------------------------------------------------------------
# Plain JSON lines and CSV.

_PLAIN_KEYS = ("id", "clip_id", "path", "caption", "tags", "labels",
               "source", "domain", "start", "duration")


def _plain_row(record: Mapping[str, Any], ref: str, audio_root: str | None,
               source: str, csv_strings: bool) -> ManifestRow:
  """One plain record to a row; raises _RowError on bad fields."""
  clip_id = record.get("id", record.get("clip_id"))
  if clip_id is not None and not isinstance(clip_id, (str, int)):
    raise _RowError(f"id must be a string, got {clip_id!r}")
  clip_id = str(clip_id).strip() if clip_id is not None else None
  path = record.get("path")
  if not isinstance(path, str) or not path.strip():
    raise _RowError(f"missing path (got {path!r})", clip_id or None)
  path = path.strip()
  if not clip_id:
    clip_id = os.path.splitext(path)[0]
  try:
    return ManifestRow(
        clip_id=clip_id, path=_join(audio_root, path),
        start_s=_float(record.get("start", 0.0) or 0.0, "start"),
        duration_s=_float(record.get("duration"), "duration",
                          allow_none=True),
        caption=_text(record.get("caption"), "caption"),
        tags=_words(record.get("tags"), "tags", ";," if csv_strings else ";"),
        labels=_words(record.get("labels"), "labels", ";"),
        source=_text(record.get("source"), "source") or source,
        domain=_text(record.get("domain"), "domain"), row_ref=ref,
        captions=(_text(record.get("caption"), "caption"),)
        if record.get("caption") else ())
  except _RowError as e:
    raise _RowError(str(e), clip_id) from None


def read_plain_jsonl(path: str, *, audio_root: str | None = None,
                     source: str = "") -> Iterator[ManifestItem]:
  """Reads plain JSON lines: {"path", "id"?, "caption"?, "tags"?, ...}.

  Args:
    path: the file (`.jsonl`, optionally `.gz`).
    audio_root: relative paths are taken under it.
    source: source name of rows that give none.

  Yields:
    `ManifestRow` per line (clip id: "id", else the path without its
    extension) or `ManifestError`.
  """
  for number, line in _lines(path):
    ref = f"{path}:{number}"
    if isinstance(line, ManifestError):
      yield line
      return
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if not isinstance(record, dict):
        raise _RowError(f"expected a JSON object, got {type(record).__name__}")
      yield _plain_row(record, ref, audio_root, source, csv_strings=False)
    except json.JSONDecodeError as e:
      yield ManifestError(ref, f"{ref}: not a JSON line: {e}")
    except _RowError as e:
      yield _error(ref, e)


def read_plain_csv(path: str, *, audio_root: str | None = None,
                   source: str = "") -> Iterator[ManifestItem]:
  """Reads a plain CSV with a header holding `path` (see module doc).

  Args:
    path: the CSV file (optionally `.gz`).
    audio_root: relative paths are taken under it.
    source: source name of rows that give none.

  Yields:
    `ManifestRow` per row or `ManifestError`.
  """
  for ref, row in _dict_rows(path, ("path",)):
    if isinstance(row, ManifestError):
      yield row
      continue
    record = {k: (v if v.strip() else None) for k, v in row.items()
              if k in _PLAIN_KEYS}
    try:
      yield _plain_row(record, ref, audio_root, source, csv_strings=True)
    except _RowError as e:
      yield _error(ref, e)


# ----------------------------------------------------------------------------
# Format detection.

FORMATS = ("lhotse", "audiocaps", "clotho", "audioset", "jsonl", "csv")


def detect_format(path: str) -> str:
  """Guesses a manifest's format from its name and first lines.

  Args:
    path: the manifest file.

  Returns:
    One of `FORMATS`.

  Raises:
    ValueError: the format cannot be told.
  """
  head = []
  try:
    with _open_text(path) as f:
      for line in f:
        if line.strip():
          head.append(line)
        if len(head) >= 4:
          break
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: cannot read: {e}") from None
  first = head[0] if head else ""
  if first.lstrip().startswith("{"):
    try:
      record = json.loads(first)
    except json.JSONDecodeError:
      record = {}
    return "lhotse" if isinstance(record, dict) and (
        "supervisions" in record or "recording" in record) else "jsonl"
  text = "".join(head)
  if first.startswith("#") and "YTID" in text:
    return "audioset"
  header = [h.strip().lstrip("\ufeff")
            for h in next(csv.reader([first]), [])] if first else []
  if "audiocap_id" in header or {"youtube_id", "caption"} <= set(header):
    return "audiocaps"
  if "file_name" in header and "caption_1" in header:
    return "clotho"
  if "path" in header:
    return "csv"
  raise ValueError(f"{path}: unknown manifest format (first line {first!r}); "
                   f"pass one of {FORMATS}")


_READERS = {"lhotse": read_lhotse_cuts, "audiocaps": read_audiocaps_csv,
            "clotho": read_clotho_csv, "audioset": read_audioset_csv,
            "jsonl": read_plain_jsonl, "csv": read_plain_csv}


def read_manifest(path: str, fmt: str = "auto", **kwargs: Any
                  ) -> Iterator[ManifestItem]:
  """Reads any supported manifest.

  Args:
    path: the manifest file.
    fmt: one of `FORMATS`, or "auto" (`detect_format`).
    **kwargs: passed to the format's reader (`audio_root`, `path_template`,
      `source`, ...).

  Yields:
    `ManifestRow` or `ManifestError` items.
  """
  fmt = detect_format(path) if fmt == "auto" else fmt
  if fmt not in _READERS:
    raise ValueError(f"unknown manifest format {fmt!r}; one of {FORMATS}")
  yield from _READERS[fmt](path, **kwargs)


def read_manifests(paths: Iterable[str], fmt: str = "auto", **kwargs: Any
                   ) -> Iterator[ManifestItem]:
  """`read_manifest` over several files, in order."""
  for path in paths:
    yield from read_manifest(path, fmt, **kwargs)
