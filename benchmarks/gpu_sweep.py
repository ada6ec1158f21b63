r"""Runs `gpu_check` over several variants in one process, one row each.

  python benchmarks/gpu_sweep.py [--budget_s=420] \
      "vit:b" "vit:b attention=cudnn" "vit:b attention=cudnn batch=128" \
      "vit:b attention=cudnn profile=25"

Each variant is `encoder:size` then `key=value` overrides of gpu_check's
flags (batch, seconds, repeats, scan_layers, no_spec_augment, attention,
dropout, no_parts, objective, dtype, peak_tflops, tflop_step; scan_layers
and no_parts default to on here, so compiles stay short; `--common` sets
keys for all variants). `profile=N` also traces three steps of that variant
after its timed ones and prints the N GPU kernels that took longest, with
the share of the traced GPU time taken by matrix products, fused attention
and everything else, then the N model parts that took longest: each op is
named by the JAX source of its HLO instruction in the compiled step (e.g.
"bwd layer_N/mlp/wi/dot_general"). On a CPU the host's op events stand in
for kernels. With `--trace_dir` the Perfetto trace (open at ui.perfetto.dev;
tens of MB) is kept there. Variants left when `--budget_s` seconds have
passed are skipped, so that one device lease always returns its rows.
"""

import argparse
import collections
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

import jax

import gpu_check

DEFAULTS = dict(objective="mtc", dtype="bfloat16", batch=64, seconds=10.0,
                repeats=10, peak_tflops=989.0, scan_layers=True,
                no_spec_augment=False, prng_impl="", attention="xla",
                dropout=None, no_parts=True, tflop_step=0.0, optimizer="")

# Substrings of kernel names, first match wins (cuBLAS/CUTLASS/nvjet GEMMs,
# cuDNN's fused attention).
KERNEL_KINDS = (("attention", ("flash", "fmha", "cudnn", "sdpa")),
                ("matmul", ("gemm", "cutlass", "nvjet", "xmma", "cublas",
                            "sm90_", "matmul")))


def parse_variant(text: str, common: str = ""
                  ) -> tuple[str, str, argparse.Namespace, int]:
  """"vit:b batch=128 attention=cudnn" -> (name, size, args, profile top).

  `common` holds key=value pairs applied first (the variant's own win).
  """
  head, *pairs = text.split()
  pairs = common.split() + pairs
  name, size = head.split(":")
  values = dict(DEFAULTS)
  profile = 0
  for pair in pairs:
    key, _, raw = pair.partition("=")
    if key == "profile":
      profile = int(raw)
      continue
    if key not in values:
      raise ValueError(f"variant {text!r}: unknown key {key!r}; valid: "
                       f"{sorted(values) + ['profile']}")
    default = values[key]
    if isinstance(default, bool):
      values[key] = raw in ("1", "true", "True")
    elif default is None:
      values[key] = float(raw)
    else:
      values[key] = type(default)(raw)
  return name, size, argparse.Namespace(**values), profile


def op_parts(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> the model part it computes.

  Args:
    hlo_text: a compiled program's `as_text()`.

  Returns:
    {name: part} for every instruction with an op_name, the name also with
    "." as "_" (as GPU kernels are named). A part is "fwd" or "bwd" (under a
    `transpose(...)`) and the last three path segments of the op_name, with
    jit/jvp/remat wrappers dropped and numbers as N, e.g.
    "bwd layer_N/mlp/wi/dot_general" -> "bwd mlp/wi/dot_general".
  """
  parts = {}
  for name, op_name in re.findall(
      r"^\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?op_name=\"([^\"]*)\"",
      hlo_text, flags=re.M):
    direction = "bwd" if "transpose(" in op_name else "fwd"
    path = [seg for seg in op_name.split("/")
            if seg and seg not in ("while", "body", "cond") and not re.match(
                r"(jit|jvp|transpose|remat|checkpoint|vmap|pjit)\(", seg)]
    part = f"{direction} " + re.sub(r"\d+", "N", "/".join(path[-3:]))
    parts[name] = parts[name.replace(".", "_")] = part
  return parts


def kernel_summary(trace_dir: str, top: int, hlo_text: str = "") -> str:
  """Top GPU kernels and model parts by total time from a jax.profiler trace.

  Args:
    trace_dir: the directory given to `jax.profiler.trace(...,
      create_perfetto_trace=True)`.
    top: how many kernels (and model parts) to list.
    hlo_text: the traced program's compiled HLO text; given, the time is
      also summed per model part (`op_parts`). Without a GPU in the trace
      the host's events named like its instructions are the ops (XLA:CPU).

  Returns:
    Text: one line per kind (attention, matmul, other) with its share of the
    device time, the `top` kernels with total ms, calls and share, then the
    `top` model parts with the share of time no instruction named.
  """
  path = next(pathlib.Path(trace_dir).rglob("perfetto_trace.json.gz"))
  with gzip.open(path, "rt") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  parts = op_parts(hlo_text) if hlo_text else {}
  names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
           if e.get("ph") == "M" and e.get("name") == "process_name"}
  gpu_pids = {p for p, n in names.items() if "gpu" in n.lower()}
  threads = {(e["pid"], e.get("tid")): e.get("args", {}).get("name", "")
             for e in events if e.get("ph") == "M"
             and e.get("name") == "thread_name" and e["pid"] in gpu_pids}
  # Kernels run on CUDA stream lines; the device's "XLA Ops" and similar
  # lines repeat the same time, so only streams count where there are any.
  streams = {k for k, n in threads.items() if "stream" in n.lower()}
  totals = collections.Counter()
  calls = collections.Counter()
  by_part = collections.Counter()
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    if gpu_pids:
      if e.get("pid") not in gpu_pids or (
          streams and (e["pid"], e.get("tid")) not in streams):
        continue
    elif e["name"] not in parts:  # a CPU trace: ops are the instructions
      continue
    totals[e["name"]] += e["dur"]
    calls[e["name"]] += 1
    op = e.get("args", {}).get("hlo_op") or e["name"]
    by_part[parts.get(op, parts.get(e["name"], "(unnamed)"))] += e["dur"]
  all_us = sum(totals.values()) or 1.0
  kinds = collections.Counter()
  for kernel, us in totals.items():
    low = kernel.lower()
    kind = next((k for k, keys in KERNEL_KINDS
                 if any(x in low for x in keys)), "other")
    kinds[kind] += us
  where = sorted(names[p] for p in gpu_pids) or ["host (CPU ops)"]
  lines = [f"device time traced: {all_us / 1e3:.1f} ms over "
           f"{sum(calls.values())} events on {where}; lines "
           f"{sorted(set(threads.values()))[:12]}"]
  lines += [f"  {k}: {100 * us / all_us:.1f}%" for k, us in kinds.most_common()]
  for kernel, us in totals.most_common(top):
    lines.append(f"  {us / 1e3:9.2f} ms {calls[kernel]:5d}x "
                 f"{100 * us / all_us:5.1f}%  {kernel[:110]}")
  if parts:
    lines.append(f"by model part ({100 * by_part['(unnamed)'] / all_us:.1f}% "
                 "unnamed):")
    for part, us in by_part.most_common(top):
      lines.append(f"  {us / 1e3:9.2f} ms {100 * us / all_us:5.1f}%  "
                   f"{part[:110]}")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("variants", nargs="+")
  parser.add_argument("--budget_s", type=float, default=420.0)
  parser.add_argument("--common", default="",
                      help="key=value pairs for every variant, e.g. "
                      "'dtype=float32 batch=2 peak_tflops=0' on a CPU")
  parser.add_argument("--trace_dir", default="",
                      help="keep profiled variants' traces here")
  flags = parser.parse_args()
  variants = [parse_variant(v, flags.common)  # fail before any work
              for v in flags.variants]
  print(f"devices: {jax.devices()}, jax {jax.__version__}")
  print(gpu_check.HEADER.replace("| encoder |", "| variant | encoder |", 1)
        .replace("|---|", "|---|---|", 1), flush=True)
  start = time.perf_counter()
  for index, (text, (name, size, args, profile)) in enumerate(
      zip(flags.variants, variants)):
    if time.perf_counter() - start > flags.budget_s:
      print(f"| {text} | skipped: past --budget_s |", flush=True)
      continue
    try:
      if profile:
        with tempfile.TemporaryDirectory() as tmp:
          out = (os.path.join(flags.trace_dir, f"variant_{index}")
                 if flags.trace_dir else tmp)
          result = gpu_check.check(name, size, args, trace_dir=out)
          summary = kernel_summary(out, profile, result["hlo_text"])
      else:
        result, summary = gpu_check.check(name, size, args), ""
      print(f"| {text} " + gpu_check.row(result), flush=True)
      if summary:
        print(summary, flush=True)
    except Exception as e:  # pylint: disable=broad-except
      print(f"| {text} | failed: {type(e).__name__}: {str(e)[:300]} |",
            flush=True)
    print(f"  [{time.perf_counter() - start:.0f} s]", file=sys.stderr,
          flush=True)


if __name__ == "__main__":
  main()
