r"""Command line of the single-machine labelling stages.

  python -m audiopt.labels.cli ingest --manifest=cuts.jsonl.gz --out=stages/ingest
  python -m audiopt.labels.cli caption --ingest=stages/ingest --out=stages/caption \
      --endpoint=http://vllm-0:8000/v1 --endpoint=http://vllm-1:8000/v1 \
      [--api_key_env=VLLM_API_KEY] [--checkpoint=/runs/captioning]
  python -m audiopt.labels.cli tag --captions=stages/caption --out=stages/tag \
      [--endpoint=http://vllm:8000/v1 | --lexical]
  python -m audiopt.labels.cli vocab --tags=stages/tag --out=stages/vocab [--k=800,2000]
  python -m audiopt.labels.cli records --ingest=stages/ingest \
      --captions=stages/caption --tags=stages/tag \
      --vocab=stages/vocab/label_2k.json --data_dir=/data/tfds --name=uts_records

Every stage takes `--shard_index/--num_shards` (where it shards) so a job
array can split a corpus, resumes where a killed run stopped, quarantines bad
input with its reason and prints its summary as one JSON line.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _ingest(args) -> dict[str, Any]:
  from audiopt.data import ingest, manifests  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if args.audio_root:
    kwargs["audio_root"] = args.audio_root
  rows = manifests.read_manifests(args.manifest, args.format, **kwargs)
  return ingest.run_ingest(
      rows, args.out, min_seconds=args.min_seconds,
      max_seconds=args.max_seconds, long_clip_policy=args.long_clips,
      shard_size=args.shard_size, num_workers=args.workers,
      shard_index=args.shard_index, num_shards=args.num_shards,
      progress=not args.quiet)


def _client(args):
  from audiopt.labels import client  # pylint: disable=g-import-not-at-top
  return client.ChatClient(args.endpoint, api_key_env=args.api_key_env,
                           max_concurrency=args.concurrency,
                           timeout_s=args.timeout_s,
                           max_retries=args.max_retries)


def _caption(args) -> dict[str, Any]:
  from audiopt.data import clip_shards  # pylint: disable=g-import-not-at-top
  from audiopt.labels import captioner  # pylint: disable=g-import-not-at-top
  if bool(args.endpoint) == bool(args.checkpoint):
    raise SystemExit("caption: give --endpoint (one or more) or --checkpoint")
  if args.checkpoint:
    model = captioner.CheckpointCaptioner.from_checkpoint(
        args.checkpoint, beam_size=args.beam_size)
  else:
    model = captioner.OpenAICaptioner(_client(args), model=args.model,
                                      preset=args.preset)
  return captioner.run_caption_stage(
      clip_shards.ClipSource(args.ingest), args.out, model,
      shard_index=args.shard_index, num_shards=args.num_shards,
      batch_size=args.batch_size, progress=not args.quiet)


def _tag(args) -> dict[str, Any]:
  from audiopt.labels import tagger  # pylint: disable=g-import-not-at-top
  if bool(args.endpoint) == args.lexical:
    raise SystemExit("tag: give --endpoint (an LLM) or --lexical")
  if args.lexical:
    model = tagger.LexicalTagger()
  else:
    model = tagger.LLMTagger(_client(args), model=args.model)
  return tagger.run_tag_stage(
      args.captions, args.out, model, shard_index=args.shard_index,
      num_shards=args.num_shards, batch_size=args.batch_size,
      field=args.field, progress=not args.quiet)


def _vocab(args) -> dict[str, Any]:
  from audiopt.labels import vocabulary  # pylint: disable=g-import-not-at-top
  ks = ([int(k) for k in args.k.split(",")] if args.k
        else list(vocabulary.DEFAULT_KS))
  return vocabulary.run_vocabulary_stage(args.tags, args.out, ks,
                                         synonyms_path=args.synonyms or None,
                                         plot=not args.no_plot)


def _records(args) -> dict[str, Any]:
  from audiopt.data import records_stage  # pylint: disable=g-import-not-at-top
  weak = None
  if args.weak_label_names:
    with open(args.weak_label_names, encoding="utf-8") as f:
      weak = [line.strip() for line in f if line.strip()]
  return records_stage.run_records_stage(
      args.ingest, args.captions or None, args.tags or None,
      args.vocab or None, args.data_dir, args.name,
      weak_label_names=weak, split_salt=args.split_salt,
      manifest_caption=args.manifest_caption, progress=not args.quiet)


def _shard_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--shard_index", type=int, default=0)
  p.add_argument("--num_shards", type=int, default=1)


def _client_flags(p: argparse.ArgumentParser, model_default: str) -> None:
  p.add_argument("--endpoint", action="append", default=[],
                 help="OpenAI-compatible base URL; repeat for several")
  p.add_argument("--api_key_env", default=None,
                 help="environment variable holding the API key")
  p.add_argument("--model", default=model_default)
  p.add_argument("--concurrency", type=int, default=8)
  p.add_argument("--timeout_s", type=float, default=600.0)
  p.add_argument("--max_retries", type=int, default=5)
  p.add_argument("--batch_size", type=int, default=64)


def build_parser() -> argparse.ArgumentParser:
  """The argument parser: one sub-command per stage."""
  from audiopt.labels import captioner, tagger  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="python -m audiopt.labels.cli",
      description=__doc__.split("\n")[0])
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  sub = parser.add_subparsers(dest="stage", required=True)

  p = sub.add_parser("ingest", help="decode, resample, FLAC clip shards")
  p.add_argument("--manifest", action="append", required=True,
                 help="manifest file; repeat for several")
  p.add_argument("--format", default="auto")
  p.add_argument("--audio_root", default="")
  p.add_argument("--out", required=True)
  p.add_argument("--min_seconds", type=float, default=1.0)
  p.add_argument("--max_seconds", type=float, default=60.0)
  p.add_argument("--long_clips", choices=("split", "drop"), default="split")
  p.add_argument("--shard_size", type=int, default=256)
  p.add_argument("--workers", type=int, default=None)
  _shard_flags(p)
  p.set_defaults(run=_ingest)

  p = sub.add_parser("caption", help="caption every ingested clip")
  p.add_argument("--ingest", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--checkpoint", default="",
                 help="a captioning run of this project, instead of "
                      "--endpoint")
  p.add_argument("--beam_size", type=int, default=1)
  p.add_argument("--preset", default="data_card",
                 choices=sorted(captioner.SAMPLING_PRESETS))
  _client_flags(p, captioner.DEFAULT_CAPTIONER_MODEL)
  _shard_flags(p)
  p.set_defaults(run=_caption)

  p = sub.add_parser("tag", help="extract tags from the captions")
  p.add_argument("--captions", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--lexical", action="store_true",
                 help="the offline lexical extractor instead of an LLM")
  p.add_argument("--field", choices=("caption", "strong_caption"),
                 default="caption")
  _client_flags(p, tagger.DEFAULT_TAGGER_MODEL)
  _shard_flags(p)
  p.set_defaults(run=_tag)

  p = sub.add_parser("vocab", help="build the UTS vocabularies")
  p.add_argument("--tags", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--k", default="", help="comma-separated sizes")
  p.add_argument("--synonyms", default="")
  p.add_argument("--no_plot", action="store_true")
  p.set_defaults(run=_vocab)

  p = sub.add_parser("records", help="join the stages into TFDS records")
  p.add_argument("--ingest", required=True)
  p.add_argument("--captions", default="")
  p.add_argument("--tags", default="")
  p.add_argument("--vocab", default="")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--name", required=True)
  p.add_argument("--weak_label_names", default="",
                 help="text file, one weak label name per line")
  p.add_argument("--split_salt", default="")
  p.add_argument("--manifest_caption", default="strong")
  p.set_defaults(run=_records)
  return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs one stage; prints and returns its summary dict."""
  args = build_parser().parse_args(argv)
  summary = args.run(args)
  print(json.dumps(summary, sort_keys=True, default=str))
  return summary


if __name__ == "__main__":
  main(sys.argv[1:])
