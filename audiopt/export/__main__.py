"""python -m audiopt.export --checkpoint=WORKDIR --out=DIR [--step=N]."""

import argparse

from audiopt import export


def main(argv=None) -> None:
  """Parses the flags and writes the export; prints what it wrote."""
  parser = argparse.ArgumentParser(
      prog="python -m audiopt.export",
      description="Export a checkpoint's encoder to safetensors + JSON.")
  parser.add_argument("--checkpoint", required=True,
                      help="run workdir or its checkpoints directory")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint step (default: newest)")
  args = parser.parse_args(argv)
  config = export.export_checkpoint(args.checkpoint, args.out, args.step)
  print(f"exported step {config['step']} encoder "
        f"{config['encoder'].get('name')} to {args.out}")


if __name__ == "__main__":
  main()
