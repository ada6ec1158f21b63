"""The ingest and records stages as Apache Beam pipelines, past one machine.

Same outputs as `ingest.run_ingest` and `records_stage.run_records_stage`:

- ingest: manifest rows are keyed to `num_output_shards` clip shards by
  crc32 of their clip id, grouped, and each group is written by one worker
  (`ingest.ingest_shard`: temporary name, index, rename) as
  `clips-beam-of-<K>-<k>.array_record`. A shard already complete is not
  redone, so a failed pipeline is resumed by running it again with the same
  manifest and K; Beam's own retries rewrite a shard to identical bytes.
  The launcher then replays every shard index into the stage journal, and
  journals malformed manifest rows.
- records: the clip indexes, caption rows and tag rows are joined by clip id
  (CoGroupByKey, `records_stage.Joiner`); the plan comes back to the
  launcher, which writes the TFDS records through `records.write_records`
  (one writer: TFDS record writing is not the expensive part; decoding is).

Every worker must see `work_dir`, the audio and the stage directories at
the same paths: a shared POSIX file system (NFS, Lustre, Filestore, or a
bucket mounted with gcsfuse). ffmpeg must be on the workers' PATH for
formats libsndfile cannot read (a custom container image on Dataflow).

Commands (arguments after `--` are Beam pipeline options):

  # Local, all cores:
  python -m audiopt.data.beam_pipeline ingest --manifest=train.csv \\
      --audio_root=/data/audiocaps --out_dir=/work/ingest -- \\
      --runner=DirectRunner --direct_num_workers=0 \\
      --direct_running_mode=multi_processing

  # Google Cloud Dataflow:
  python -m audiopt.data.beam_pipeline ingest \\
      --manifest=/mnt/uts/cuts.jsonl.gz --audio_root=/mnt/audio \\
      --out_dir=/mnt/work/ingest -- \\
      --runner=DataflowRunner --project=PROJECT --region=REGION \\
      --temp_location=gs://BUCKET/tmp --setup_file=./setup.py \\
      --sdk_container_image=IMAGE_WITH_FFMPEG_AND_MOUNTS

  # Apache Flink (portable runner; job server started by Beam):
  ... -- --runner=FlinkRunner --flink_master=HOST:8081 \\
      --environment_type=PROCESS --environment_config='{"command": "..."}'

  # Apache Spark:
  ... -- --runner=SparkRunner --spark_master_url=spark://HOST:7077 \\
      --environment_type=DOCKER

  # Records:
  python -m audiopt.data.beam_pipeline records --ingest_dir=/work/ingest \\
      --caption_dir=/work/caption --tag_dir=/work/tag \\
      --vocab=/work/vocab/label_2k.json --data_dir=/work/data \\
      --name=uts_2k -- --runner=DirectRunner

Without Beam, a job array does the same for ingest: task i of N runs
`ingest.run_ingest(rows, out_dir, shard_index=i, num_shards=N)`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
from apache_beam.options import pipeline_options
from absl import logging

from audiopt.data import clip_shards
from audiopt.data import ingest
from audiopt.data import journal as journal_lib
from audiopt.data import manifests
from audiopt.data import records_stage
from audiopt.labels import vocabulary

_NAMESPACE = "audiopt"


def beam_shard_prefix(num_output_shards: int) -> str:
  """Name prefix of the Beam ingest shards for K output shards."""
  return f"clips-beam-of-{num_output_shards:05d}-"


def shard_of(clip_id: str, num_output_shards: int) -> int:
  """The output shard of a clip id: crc32 mod K."""
  return zlib.crc32(clip_id.encode("utf-8")) % num_output_shards


class _IngestShardFn(beam.DoFn):
  """Writes one clip shard from its group of manifest rows."""

  def __init__(self, out_dir: str, options: ingest.IngestOptions,
               num_output_shards: int):
    super().__init__()
    self._out_dir = out_dir
    self._options = options
    self._k = num_output_shards
    self._rows = beam.metrics.Metrics.counter(_NAMESPACE, "rows")
    self._clips = beam.metrics.Metrics.counter(_NAMESPACE, "clips")
    self._quarantined = beam.metrics.Metrics.counter(_NAMESPACE,
                                                     "quarantined")
    self._duplicates = beam.metrics.Metrics.counter(_NAMESPACE, "duplicates")
    self._skipped = beam.metrics.Metrics.counter(_NAMESPACE,
                                                 "shards_already_done")

  def process(self, element):
    shard, rows = element
    name = f"{beam_shard_prefix(self._k)}{shard:05d}{clip_shards.SHARD_SUFFIX}"
    if name in clip_shards.complete_shards(self._out_dir, name):
      self._skipped.inc()
      yield name
      return
    unique: dict[str, manifests.ManifestRow] = {}
    # Sorted, so that a retried shard gets the same bytes.
    for row in sorted(rows, key=lambda r: (r.clip_id, r.row_ref)):
      if row.clip_id in unique:
        self._duplicates.inc()
        continue
      unique[row.clip_id] = row
    index = ingest.ingest_shard(list(unique.values()),
                                os.path.join(self._out_dir, name),
                                self._options)
    self._rows.inc(len(unique))
    self._clips.inc(index["num_records"])
    self._quarantined.inc(len(index["quarantined"]))
    yield name


def build_ingest(pipeline: beam.Pipeline,
                 rows: Sequence[manifests.ManifestRow], out_dir: str,
                 options: ingest.IngestOptions, num_output_shards: int):
  """Adds the ingest transforms to `pipeline`.

  Args:
    pipeline: the Beam pipeline.
    rows: the manifest rows still to ingest.
    out_dir: the stage directory (shared by every worker).
    options: the ingest options.
    num_output_shards: K, fixed for the corpus (resuming needs the same K).

  Returns:
    The PCollection of written shard names.
  """
  return (pipeline
          | "Rows" >> beam.Create(rows, reshuffle=False)
          | "KeyByShard" >> beam.Map(
              lambda r: (shard_of(r.clip_id, num_output_shards), r))
          | "GroupByShard" >> beam.GroupByKey()
          | "WriteShards" >> beam.ParDo(
              _IngestShardFn(out_dir, options, num_output_shards)))


def run_ingest_pipeline(manifest_items: Iterable[manifests.ManifestItem],
                        out_dir: str, *, min_seconds: float = 1.0,
                        max_seconds: float = 60.0,
                        long_clip_policy: str = "split",
                        shard_size: int = 256,
                        num_output_shards: int | None = None,
                        beam_options: Sequence[str] | None = None
                        ) -> dict[str, Any]:
  """Runs the ingest stage as a Beam pipeline and journals its results.

  Args:
    manifest_items: `ManifestRow`s and `ManifestError`s.
    out_dir: the stage directory.
    min_seconds: see `ingest.run_ingest`.
    max_seconds: see `ingest.run_ingest`.
    long_clip_policy: see `ingest.run_ingest`.
    shard_size: rows per shard on average, when `num_output_shards` is None.
    num_output_shards: K; None: ceil(rows / shard_size) over the whole
      manifest (so the same manifest gives the same K on a rerun).
    beam_options: Beam pipeline flags, e.g. ["--runner=DirectRunner"].

  Returns:
    The stage journal's summary plus "shards_total" and "rows_submitted".
  """
  options = ingest.IngestOptions(min_seconds, max_seconds, long_clip_policy)
  items = list(manifest_items)
  k = num_output_shards or max(1, math.ceil(len(items) / shard_size))
  prefix = beam_shard_prefix(k)
  os.makedirs(out_dir, exist_ok=True)
  with journal_lib.Journal(out_dir) as journal:
    ingest.recover(out_dir, prefix, journal)
    rows = []
    for item in items:
      if isinstance(item, manifests.ManifestError):
        journal.quarantine(item.item_id, item.reason, kind="manifest",
                           row_ref=item.row_ref)
      elif not journal.is_done(item.clip_id):
        rows.append(item)
  if rows:
    flags = pipeline_options.PipelineOptions(list(beam_options or []))
    with beam.Pipeline(options=flags) as pipeline:
      build_ingest(pipeline, rows, out_dir, options, k)
  with journal_lib.Journal(out_dir) as journal:
    ingest.recover(out_dir, prefix, journal)
    summary = {**journal.summary(), "rows_submitted": len(rows),
               "shards_total": len(clip_shards.complete_shards(out_dir,
                                                               prefix))}
  logging.info("beam ingest %s: %s", out_dir, summary)
  return summary


# ----------------------------------------------------------------------------
# Records.


def _read_stage(directory: str | None):
  """(clip id, row) pairs of a stage directory's results; none if None."""
  if directory is None:
    return []
  return [(str(r["id"]), r) for r in journal_lib.read_results(directory)]


def _clip_items(ingest_dir: str, shard: str):
  for clip in clip_shards.read_index(ingest_dir, shard)["clips"]:
    yield clip["clip_id"], {**clip, "shard": shard}


def _join(element, joiner: records_stage.Joiner):
  clip_id, groups = element
  clips = list(groups["clips"])
  if not clips:
    return []  # labels of a clip the ingest did not keep
  captions = list(groups["captions"])
  tags = list(groups["tags"])
  return [joiner.join(clips[0], captions[-1] if captions else None,
                      tags[-1] if tags else None)]


def build_records_join(pipeline: beam.Pipeline, ingest_dir: str,
                       caption_stage_dir: str | None,
                       tag_stage_dir: str | None,
                       joiner: records_stage.Joiner):
  """Adds the join of clips, captions and tags to `pipeline`.

  Returns:
    A PCollection of `Joiner.join` results (planned records and drops).
  """
  shards = clip_shards.complete_shards(ingest_dir)
  clips = (pipeline | "Shards" >> beam.Create(shards)
           | "Clips" >> beam.FlatMap(lambda s: _clip_items(ingest_dir, s)))
  captions = (pipeline | "CaptionDir" >> beam.Create([caption_stage_dir])
              | "Captions" >> beam.FlatMap(_read_stage))
  tags = (pipeline | "TagDir" >> beam.Create([tag_stage_dir])
          | "Tags" >> beam.FlatMap(_read_stage))
  return ({"clips": clips, "captions": captions, "tags": tags}
          | "ByClip" >> beam.CoGroupByKey()
          | "Join" >> beam.FlatMap(_join, joiner))


def run_records_pipeline(ingest_dir: str, caption_stage_dir: str | None,
                         tag_stage_dir: str | None, vocab_path: str | None,
                         data_dir: str, name: str, *,
                         weak_label_names: Sequence[str] | None = None,
                         split_rules: records_stage.SplitRules | None = None,
                         split_salt: str = "",
                         variants_path: str | None = "auto",
                         manifest_caption: str = "strong",
                         domains: Mapping[str, str] | None = None,
                         version: str = "1.0.0", description: str = "",
                         work_dir: str | None = None,
                         beam_options: Sequence[str] | None = None,
                         progress: bool = True) -> dict[str, Any]:
  """The records stage with the join in Beam; arguments as
  `records_stage.run_records_stage`, plus:

  Args:
    work_dir: where the plan is written (JSON lines, shared by workers);
      None: `<data_dir>/_records_stage/<name>-<version>/plan`.
    beam_options: Beam pipeline flags.

  Returns:
    The summary of `records_stage.run_records_stage`.
  """
  if tag_stage_dir is not None and vocab_path is None:
    raise ValueError("a tag stage needs a vocabulary (vocab_path)")
  stage_dir = os.path.join(data_dir, "_records_stage", f"{name}-{version}")
  work_dir = work_dir or os.path.join(stage_dir, "plan")
  os.makedirs(work_dir, exist_ok=True)
  vocab = vocabulary.load_vocabulary(vocab_path) if vocab_path else None
  clips_meta = clip_shards.iter_clip_metadata(ingest_dir)
  weak_names = (list(weak_label_names) if weak_label_names is not None
                else records_stage.collect_label_names(clips_meta))
  joiner = records_stage.Joiner(
      vocab=vocab, variants=records_stage.load_variants(vocab_path,
                                                        variants_path),
      weak_label_names=weak_names, split_rules=split_rules,
      split_salt=split_salt, domains=domains,
      manifest_caption=manifest_caption,
      use_caption_stage=caption_stage_dir is not None,
      use_tag_stage=tag_stage_dir is not None)
  prefix = os.path.join(work_dir, "plan")
  for stale in os.listdir(work_dir):
    os.remove(os.path.join(work_dir, stale))
  flags = pipeline_options.PipelineOptions(list(beam_options or []))
  with beam.Pipeline(options=flags) as pipeline:
    _ = (build_records_join(pipeline, ingest_dir, caption_stage_dir,
                            tag_stage_dir, joiner)
         | "Encode" >> beam.Map(json.dumps, ensure_ascii=False)
         | "WritePlan" >> beam.io.WriteToText(prefix,
                                              file_name_suffix=".jsonl"))
  entries = [json.loads(line) for path in sorted(os.listdir(work_dir))
             for line in open(os.path.join(work_dir, path), encoding="utf-8")
             if line.strip()]
  planned = sorted((e for e in entries if "drop" not in e),
                   key=lambda e: (e["shard"], e["index"]))
  dropped = sorted((e for e in entries if "drop" in e),
                   key=lambda e: e["clip_id"])
  return records_stage.finish_records_stage(
      ingest_dir, planned, dropped, data_dir, name,
      num_clips=len(entries), tag_names=vocab or [],
      weak_label_names=weak_names, version=version, description=description,
      stage_dir=stage_dir, progress=progress)


# ----------------------------------------------------------------------------
# Command line.


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m audiopt.data.beam_pipeline",
      description="audiopt ingest and records stages on Apache Beam; "
      "arguments after '--' go to Beam.")
  sub = parser.add_subparsers(dest="command", required=True)
  ing = sub.add_parser("ingest")
  ing.add_argument("--manifest", action="append", required=True)
  ing.add_argument("--format", default="auto", choices=("auto",)
                   + manifests.FORMATS)
  ing.add_argument("--audio_root")
  ing.add_argument("--path_template")
  ing.add_argument("--out_dir", required=True)
  ing.add_argument("--min_seconds", type=float, default=1.0)
  ing.add_argument("--max_seconds", type=float, default=60.0)
  ing.add_argument("--long_clip_policy", default="split",
                   choices=ingest.POLICIES)
  ing.add_argument("--shard_size", type=int, default=256)
  ing.add_argument("--num_output_shards", type=int)
  rec = sub.add_parser("records")
  rec.add_argument("--ingest_dir", required=True)
  rec.add_argument("--caption_dir")
  rec.add_argument("--tag_dir")
  rec.add_argument("--vocab")
  rec.add_argument("--data_dir", required=True)
  rec.add_argument("--name", required=True)
  rec.add_argument("--version", default="1.0.0")
  rec.add_argument("--manifest_caption", default="strong",
                   choices=("strong", "full"))
  rec.add_argument("--class_labels",
                   help="AudioSet class_labels_indices.csv: weak label names")
  rec.add_argument("--validation_fraction", type=float, default=0.0)
  argv = list(argv)
  beam_args = argv[argv.index("--") + 1:] if "--" in argv else []
  own = argv[:argv.index("--")] if "--" in argv else argv
  return parser.parse_args(own), beam_args


def main(argv: Sequence[str] | None = None) -> None:
  """Command-line entry point (module doc)."""
  args, beam_args = _parse(sys.argv[1:] if argv is None else argv)
  if args.command == "ingest":
    kwargs = {"audio_root": args.audio_root}
    if args.path_template:
      kwargs["path_template"] = args.path_template
    summary = run_ingest_pipeline(
        manifests.read_manifests(args.manifest, args.format, **kwargs),
        args.out_dir, min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        long_clip_policy=args.long_clip_policy, shard_size=args.shard_size,
        num_output_shards=args.num_output_shards, beam_options=beam_args)
  else:
    names = ([n for _, n in manifests.read_class_labels(args.class_labels)]
             if args.class_labels else None)
    rules = ({"train": 1 - args.validation_fraction,
              "validation": args.validation_fraction}
             if args.validation_fraction else None)
    summary = run_records_pipeline(
        args.ingest_dir, args.caption_dir, args.tag_dir, args.vocab,
        args.data_dir, args.name, weak_label_names=names, split_rules=rules,
        manifest_caption=args.manifest_caption, version=args.version,
        beam_options=beam_args)
  print(summary)


if __name__ == "__main__":
  main()
