r"""Zipformer-M train step on CPU: audiopt (JAX) vs the authors' PyTorch code.

Times, in one process and on the same batch and weights, the reference
`ZipformerEncoderModel(ZipformerConfig())` from a checkout of AudenAI/Auden
and audiopt's Zipformer-M (`build_encoder(dict(name="zipformer", size="m"))`)
with the reference's weights imported by `audiopt.models.zipformer_import`:

  eval  forward only, eval mode (torch under no_grad, a jitted Flax apply
        with train=False);
  grad  forward + loss + backward in train mode, no optimizer;
  step  the train step: forward + loss + backward + a ScaledAdam update, in
        train mode. PyTorch: the reference's own `auden.optim.ScaledAdam`
        built as its trainer builds it (named parameter groups from
        `get_parameter_groups_with_lrs`, lr 0.045, clipping_scale 2.0), with
        `zero_grad` / `backward` / `step`. JAX: one jitted function of
        `value_and_grad` + `audiopt.train.scaled_adam.scaled_adam(0.045)`
        (clipping_scale 2.0) + `optax.apply_updates`, with the parameters and
        optimizer state donated (the torch step updates in place).

The loss is the mean square of the valid output frames. Both models run at
a saturated batch count (100000: final dropout / skip rates), the reference
through its `model_batch_count` buffer and `set_batch_count()`.

For each phase both sides are warmed up (`--warmups` runs each; the JAX
programs are compiled ahead of time and the compile time reported), then the
timed runs alternate torch, jax, torch, jax, ... (`--repeats` each) so that
the load of this shared machine hits both alike. Reported per framework:
median, min and max seconds; per phase: the ratio of medians (JAX /
PyTorch). PyTorch uses `--threads` intra-op threads; XLA's CPU backend uses
all cores, so `os.cpu_count()` and the load average (before and after) are
recorded with the numbers. Prints a Markdown table, then one JSON line.

Usage (needs torch; audiopt never imports the reference, only this script):

  python benchmarks/zipformer_step_ratio.py /tmp/auden \
      [--batch=8] [--seconds=10] [--repeats=5] [--warmups=2] [--threads=2] \
      [--phases=eval,grad,step] [--swoosh=fallback]

where /tmp/auden holds the AudenAI/Auden sources (src/auden/...). The
reference imports k2 only for its SwooshL/R kernels. When k2 is absent this
script installs a stand-in module: the forward functions compute the formula
log(1 + e^(x - s)) - 0.08 x - c in torch; `swoosh_l` / `swoosh_r` (used when
the input requires grad) are, with `--swoosh=fallback` (default), the
reference's own non-k2 autograd functions `SwooshLFunction` /
`SwooshRFunction` from its scaling.py (which, like k2, store an 8-bit
derivative), or with `--swoosh=autograd` the plain formula differentiated by
torch autograd; `swoosh_*_forward_and_deriv` (used in the backward of
`ActivationDropoutAndLinear`) return the formula and its exact derivative
sigmoid(x - s) - 0.08.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
from typing import Any, Callable

import numpy as np

_FEATURE_DIM = 80
_FRAMES_PER_SECOND = 100
_BATCH_COUNT = 100000.0
_LR = 0.045
_SCALING_MODULE = "auden.models.zipformer.utils.scaling"
# (shift, constant) of SwooshL and SwooshR.
_SWOOSH = {"l": (4.0, 0.035), "r": (1.0, 0.313261687)}


def _install_k2_stand_in(torch, mode: str) -> None:
  """Registers a `k2` module with differentiable Swoosh functions.

  Args:
    torch: the torch module.
    mode: "fallback" makes `k2.swoosh_l` / `k2.swoosh_r` call the
      reference's `SwooshLFunction` / `SwooshRFunction` (looked up when
      called, since scaling.py imports k2 before defining them); "autograd"
      makes them the plain formula, differentiated by torch.
  """

  def forward(shift, const):

    def f(x):
      zero = torch.zeros((), dtype=x.dtype, device=x.device)
      return torch.logaddexp(zero, x - shift) - 0.08 * x - const

    return f

  def forward_and_deriv(shift, const):
    f = forward(shift, const)

    def g(x):
      return f(x), torch.sigmoid(x - shift) - 0.08

    return g

  def fallback(class_name):

    def f(x):
      return getattr(sys.modules[_SCALING_MODULE], class_name).apply(x)

    return f

  k2 = types.ModuleType("k2")
  for name, (shift, const) in _SWOOSH.items():
    setattr(k2, f"swoosh_{name}_forward", forward(shift, const))
    setattr(k2, f"swoosh_{name}_forward_and_deriv",
            forward_and_deriv(shift, const))
    if mode == "fallback":
      setattr(k2, f"swoosh_{name}", fallback(f"Swoosh{name.upper()}Function"))
    else:
      setattr(k2, f"swoosh_{name}", forward(shift, const))
  sys.modules["k2"] = k2


def _summary(times: list[float]) -> dict[str, Any]:
  """Median / min / max seconds of a list of timings."""
  return {"median_s": statistics.median(times), "min_s": min(times),
          "max_s": max(times), "times_s": times}


def _interleave(fns: dict[str, Callable[[int], None]], warmups: int,
                repeats: int) -> dict[str, list[float]]:
  """Warms up each fn, then times them alternately `repeats` times each.

  Args:
    fns: name -> fn(i) that runs call i and returns when it has finished.
    warmups: untimed calls of each fn first (all of one, then the next).
    repeats: timed calls of each fn, alternating between them.

  Returns:
    name -> the seconds of its timed calls, in order.
  """
  call = 0
  for fn in fns.values():
    for _ in range(warmups):
      fn(call)
      call += 1
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn(call)
      times[name].append(time.perf_counter() - t0)
      call += 1
  return times


def _loadavg() -> list[float]:
  """The 1, 5 and 15 minute load averages (NaN where unavailable)."""
  try:
    return [round(v, 2) for v in os.getloadavg()]
  except OSError:
    return [float("nan")] * 3


def _torch_side(args, torch, x_np: np.ndarray, lengths: np.ndarray):
  """Builds the reference model and its eval / grad / step callables.

  Returns:
    (state dict as numpy arrays, {phase: fn(i)}, dict of the last outputs:
    "eval" frames and the "grad" / "step" losses).
  """
  # pylint: disable=g-import-not-at-top
  from auden.models.zipformer.model import ZipformerEncoderModel
  from auden.models.zipformer.model_config import ZipformerConfig
  from auden.optim import ScaledAdam
  from auden.optim import get_parameter_groups_with_lrs
  # pylint: enable=g-import-not-at-top

  torch.manual_seed(args.seed)
  model = ZipformerEncoderModel(ZipformerConfig())
  with torch.no_grad():
    model.model_batch_count.fill_(_BATCH_COUNT)
  model.set_batch_count()
  state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  x = torch.from_numpy(x_np)
  x_lens = torch.from_numpy(lengths)
  optimizer = ScaledAdam(
      get_parameter_groups_with_lrs(model, lr=_LR, include_names=True),
      lr=_LR, clipping_scale=2.0)
  last = {}

  def loss_fn():
    out = model(x, x_lens)
    frames = out["encoder_out"]
    valid = (torch.arange(frames.shape[1])[None, :] <
             out["encoder_out_lens"][:, None]).to(frames.dtype)[..., None]
    return (frames.square() * valid).sum() / (
        valid.sum() * frames.shape[-1]).clamp(min=1.0)

  def run_eval(i):
    del i
    model.eval()
    with torch.no_grad():
      last["eval"] = model(x, x_lens)["encoder_out"]

  def run_grad(i):
    del i
    model.train()
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    last["grad_loss"] = float(loss.detach())

  def run_step(i):
    del i
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    last["step_loss"] = float(loss.detach())

  return state, {"eval": run_eval, "grad": run_grad, "step": run_step}, last


def _jax_side(args, state: dict[str, np.ndarray], x_np: np.ndarray,
              mask_np: np.ndarray):
  """Builds audiopt's Zipformer-M with imported weights and its callables.

  Returns:
    ({phase: fn(i)}, {phase: compile seconds}, dict of last outputs).
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import optax
  from audiopt.models import registry
  from audiopt.models import zipformer_import
  from audiopt.train import scaled_adam
  # pylint: enable=g-import-not-at-top

  cfg = dict(name="zipformer", size="m")
  model = registry.build_encoder(cfg)
  params = jax.tree.map(jnp.asarray,
                        zipformer_import.import_state_dict(state, cfg))
  x = jnp.asarray(x_np)
  mask = jnp.asarray(mask_np)
  key = jax.random.key(args.seed)
  tx = scaled_adam.scaled_adam(_LR, clipping_scale=2.0)

  def loss_fn(p, x, mask, rng):
    out = model.apply({"params": p}, x, mask, train=True,
                      batch_count=_BATCH_COUNT, rngs={"dropout": rng})
    w = out.mask[..., None].astype(jnp.float32)
    sq = jnp.square(out.frames.astype(jnp.float32)) * w
    return jnp.sum(sq) / jnp.maximum(jnp.sum(w) * out.frames.shape[-1], 1.0)

  def forward(p, x, mask):
    return model.apply({"params": p}, x, mask, train=False).frames

  def train_step(p, opt_state, x, mask, rng):
    loss, grads = jax.value_and_grad(loss_fn)(p, x, mask, rng)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  compile_s = {}

  def compile_(name, fn, *example, **jit_kw):
    t0 = time.perf_counter()
    compiled = jax.jit(fn, **jit_kw).lower(*example).compile()
    compile_s[name] = time.perf_counter() - t0
    return compiled

  phases = args.phases
  programs = {}
  if "eval" in phases:
    programs["eval"] = compile_("eval", forward, params, x, mask)
  if "grad" in phases:
    programs["grad"] = compile_("grad", jax.value_and_grad(loss_fn), params,
                                x, mask, key)
  state_box = {}
  if "step" in phases:
    opt_state = jax.jit(tx.init)(params)
    programs["step"] = compile_("step", train_step, params, opt_state, x,
                                mask, key, donate_argnums=(0, 1))
    # The step donates its inputs: it owns copies, never `params` itself.
    state_box["step"] = (jax.tree.map(jnp.copy, params), opt_state)
  last = {}
  # One dropout key per call number the interleaving can use, made here so
  # that no timed call includes making its key.
  keys = [jax.random.fold_in(key, i)
          for i in range(2 * (args.warmups + args.repeats))]
  jax.block_until_ready(keys)

  def run_eval(i):
    del i
    last["eval"] = jax.block_until_ready(programs["eval"](params, x, mask))

  def run_grad(i):
    loss, grads = programs["grad"](params, x, mask, keys[i])
    jax.block_until_ready(grads)
    last["grad_loss"] = float(loss)

  def run_step(i):
    p, s = state_box["step"]
    p, s, loss = programs["step"](p, s, x, mask, keys[i])
    jax.block_until_ready((p, s))
    state_box["step"] = (p, s)
    last["step_loss"] = float(loss)

  return ({"eval": run_eval, "grad": run_grad, "step": run_step}, compile_s,
          last)


def _table(result: dict[str, Any]) -> str:
  """Markdown table of the per-phase timings and ratios."""

  def cell(s):
    return f"{s['median_s']:.2f} ({s['min_s']:.2f}-{s['max_s']:.2f})"

  names = {"eval": "forward (eval)", "grad": "forward+backward (train)",
           "step": "train step: fwd+bwd+ScaledAdam (train)"}
  lines = [
      "| phase | PyTorch reference s, median (min-max) | "
      "audiopt JAX s, median (min-max) | JAX / PyTorch (medians) |",
      "|---|---:|---:|---:|",
  ]
  for phase, row in result["phases"].items():
    lines.append(f"| {names[phase]} | {cell(row['torch'])} | "
                 f"{cell(row['jax'])} | {row['ratio']:.2f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("reference", help="checkout of AudenAI/Auden")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmups", type=int, default=2)
  parser.add_argument("--threads", type=int, default=2,
                      help="torch intra-op threads")
  parser.add_argument("--phases", default="eval,grad,step",
                      help="comma-separated subset of eval,grad,step")
  parser.add_argument("--swoosh", choices=("fallback", "autograd"),
                      default="fallback",
                      help="k2 stand-in's differentiable Swoosh (if no k2)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
  if not set(args.phases) <= {"eval", "grad", "step"} or not args.phases:
    parser.error(f"bad --phases {args.phases}")

  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  load_start = _loadavg()
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)
  try:
    import k2  # pylint: disable=g-import-not-at-top,unused-import
    k2_used = "k2"
  except ImportError:
    _install_k2_stand_in(torch, args.swoosh)
    k2_used = f"stand-in ({args.swoosh})"
  sys.path.insert(0, os.path.join(os.path.abspath(args.reference), "src"))
  import jax  # pylint: disable=g-import-not-at-top

  frames = int(round(args.seconds * _FRAMES_PER_SECOND))
  rng = np.random.default_rng(args.seed)
  # Roughly the range of log-mel fbank values.
  x = rng.normal(-6.0, 3.0, (args.batch, frames, _FEATURE_DIM)).astype(
      np.float32)
  lengths = np.full((args.batch,), frames, np.int64)
  mask = np.ones((args.batch, frames), bool)

  state, torch_fns, torch_last = _torch_side(args, torch, x, lengths)
  jax_fns, compile_s, jax_last = _jax_side(args, state, x, mask)
  rounded = {k: round(v, 1) for k, v in compile_s.items()}
  print(f"JAX compile s: {json.dumps(rounded)}", file=sys.stderr, flush=True)

  phases = {}
  for phase in args.phases:
    t0 = time.perf_counter()
    times = _interleave({"torch": torch_fns[phase], "jax": jax_fns[phase]},
                        args.warmups, args.repeats)
    row = {"torch": _summary(times["torch"]), "jax": _summary(times["jax"]),
           "load_after": _loadavg()}
    row["ratio"] = row["jax"]["median_s"] / row["torch"]["median_s"]
    if phase == "eval":
      a = torch_last["eval"].numpy()
      b = np.asarray(jax_last["eval"])
      row["max_abs_diff"] = float(np.abs(a - b).max())
      row["max_abs_out"] = float(np.abs(a).max())
    else:
      row["last_loss"] = {"torch": torch_last[f"{phase}_loss"],
                          "jax": jax_last[f"{phase}_loss"]}
    phases[phase] = row
    extra = {k: v for k, v in row.items() if k not in ("torch", "jax")}
    print(f"{phase}: {time.perf_counter() - t0:.0f} s wall, "
          f"{json.dumps(extra)}", file=sys.stderr, flush=True)

  result = {
      "benchmark": "zipformer_step_ratio", "batch": args.batch,
      "frames": frames, "feature_dim": _FEATURE_DIM, "repeats": args.repeats,
      "warmups": args.warmups, "torch_threads": args.threads,
      "cpu_count": os.cpu_count(), "load_start": load_start,
      "load_end": _loadavg(), "k2": k2_used, "torch": torch.__version__,
      "jax": jax.__version__, "jax_device": str(jax.devices()[0]),
      "machine": platform.processor() or platform.machine(),
      "jax_compile_s": compile_s, "phases": phases,
      "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
  }
  print(f"Zipformer-M, {args.batch} clips x {args.seconds:g} s ({frames} "
        f"frames x {_FEATURE_DIM} fbank), float32 on CPU; torch "
        f"{torch.__version__} with {args.threads} threads, jax "
        f"{jax.__version__} (XLA CPU, all {os.cpu_count()} cores); "
        f"{args.warmups} warm-ups each, then {args.repeats} timed runs each, "
        f"alternating; load average {load_start} at start, "
        f"{result['load_end']} at end; k2: {k2_used}.\n")
  print(_table(result))
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
