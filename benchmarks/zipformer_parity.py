r"""Eval-mode parity of audiopt's Zipformer with the authors' PyTorch code.

Builds the reference `ZipformerEncoderModel` with its default config
(Zipformer-M) and random weights (bypass scales, downsample biases and
BiasNorm parameters perturbed, so that they are not at their trivial initial
values), imports its state dict with `audiopt.models.zipformer_import`, runs
both on one random fbank batch with lengths 1000, 837 and 512 and prints the
max |difference| over valid output frames:

  * batch:  Flax `reference_padding=True` vs the reference on the padded batch;
  * alone:  Flax default (padding-invariant) on the padded batch vs the
            reference run on each sequence alone, unpadded;
  * stacks: the per-stack intermediates vs the reference's encoder_out_full.

Usage (needs torch; the reference checkout is never imported by audiopt):

  python benchmarks/zipformer_parity.py /tmp/auden

where /tmp/auden holds the AudenAI/Auden sources (src/auden/...). The
reference imports k2 only for the SwooshL/R kernels; when k2 is absent this
script installs a stand-in module computing the same formulas in torch
(log(1 + e^(x - s)) - 0.08 x - c), which is all that eval mode uses.
"""

import argparse
import functools
import os
import re
import sys
import time
import types

import numpy as np


def _install_k2_stand_in(torch) -> None:
  """Registers a minimal `k2` module with the Swoosh forward functions."""

  def swoosh(shift, const):

    def f(x):
      zero = torch.zeros((), dtype=x.dtype, device=x.device)
      return torch.logaddexp(zero, x - shift) - 0.08 * x - const

    return f

  k2 = types.ModuleType("k2")
  k2.swoosh_l_forward = k2.swoosh_l = swoosh(4.0, 0.035)
  k2.swoosh_r_forward = k2.swoosh_r = swoosh(1.0, 0.313261687)
  sys.modules["k2"] = k2


def _perturb(model, torch, seed: int) -> None:
  """Moves the parameters that start at constants away from them."""
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bypass_scale"):
        p.copy_(0.2 + 0.8 * torch.rand(p.shape, generator=g))
      elif name.endswith("downsample.bias") or name.endswith(
          "downsample_output.bias"):
        p.copy_(torch.randn(p.shape, generator=g))
      elif name.endswith("log_scale"):
        p.copy_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=g))
      elif name.endswith("norm.bias"):
        p.copy_(0.1 * torch.randn(p.shape, generator=g))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("reference", help="checkout of AudenAI/Auden")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lengths", default="1000,837,512")
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()

  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)
  try:
    import k2  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    _install_k2_stand_in(torch)
  sys.path.insert(0, os.path.join(os.path.abspath(args.reference), "src"))
  # pylint: disable=g-import-not-at-top
  from auden.models.zipformer.model import ZipformerEncoderModel
  from auden.models.zipformer.model_config import ZipformerConfig

  import jax
  import jax.numpy as jnp
  jax.config.update("jax_default_matmul_precision", "highest")
  from audiopt.models import registry
  from audiopt.models import zipformer_import
  # pylint: enable=g-import-not-at-top

  torch.manual_seed(args.seed)
  ref = ZipformerEncoderModel(ZipformerConfig()).eval()
  _perturb(ref, torch, args.seed)
  n_ref = sum(p.numel() for p in ref.parameters())
  state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
  params = zipformer_import.import_state_dict(state, {"name": "zipformer",
                                                      "size": "m"})
  n_flax = sum(v.size for v in jax.tree.leaves(params))
  exported = zipformer_import.export_state_dict(params)
  fresh = ZipformerEncoderModel(ZipformerConfig())
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()},
                        strict=True)
  unused = re.compile(r"layers\.\d+\.bypass_scale$")
  same = all(np.array_equal(v, state[k]) for k, v in exported.items()
             if not unused.search(k))
  print(f"export: {len(exported)} tensors load into the reference with "
        f"strict=True; used ones identical to the original: {same}")
  print(f"parameters: reference {n_ref:,}, flax {n_flax:,} "
        f"(difference {n_ref - n_flax:,}: the unused per-layer bypass_scale)")

  lengths = [int(n) for n in args.lengths.split(",")]
  t = max(lengths)
  rng = np.random.default_rng(args.seed)
  x = rng.standard_normal((len(lengths), t, 80)).astype(np.float32)
  mask = np.arange(t)[None, :] < np.asarray(lengths)[:, None]

  start = time.perf_counter()
  with torch.no_grad():
    out = ref(torch.from_numpy(x), torch.tensor(lengths))
    alone = [ref(torch.from_numpy(x[i:i + 1, :n]), torch.tensor([n]))
             for i, n in enumerate(lengths)]
  print(f"reference forward: {time.perf_counter() - start:.1f} s")
  ref_out = out["encoder_out"].numpy()
  ref_full = out["encoder_out_full"].numpy()
  out_lens = out["encoder_out_lens"].numpy()

  def run(reference_padding):
    model = registry.build_encoder(dict(
        name="zipformer", size="m", reference_padding=reference_padding))
    fn = jax.jit(functools.partial(model.apply, train=False))
    return fn({"params": params}, jnp.asarray(x), jnp.asarray(mask))

  start = time.perf_counter()
  batch = run(True)
  invariant = run(False)
  jax.block_until_ready((batch.frames, invariant.frames))
  print(f"flax compile + forward (x2): {time.perf_counter() - start:.1f} s")

  np.testing.assert_array_equal(np.asarray(batch.mask).sum(-1), out_lens)
  frames_b = np.asarray(batch.frames)
  frames_i = np.asarray(invariant.frames)
  d_batch = d_alone = d_stack = leak = 0.0
  scale = 0.0
  for i, n in enumerate(out_lens):
    d_batch = max(d_batch, np.abs(frames_b[i, :n] - ref_out[i, :n]).max())
    a = alone[i]["encoder_out"].numpy()[0]
    d_alone = max(d_alone, np.abs(frames_i[i, :n] - a[:n]).max())
    leak = max(leak, np.abs(ref_out[i, :n] - a[:n]).max())
    scale = max(scale, np.abs(ref_out[i, :n]).max())
    for s in range(6):
      y = np.asarray(batch.intermediates[f"stack_{s}"])[i, :n]
      d_stack = max(d_stack, np.abs(y - ref_full[s, i, :n, :y.shape[-1]]).max())
  print(f"max |reference output| {scale:.3f}")
  print(f"max |diff| batch  (reference_padding=True vs padded reference): "
        f"{d_batch:.3e}")
  print(f"max |diff| alone  (default vs reference per unpadded sequence): "
        f"{d_alone:.3e}")
  print(f"max |diff| stacks (intermediates vs encoder_out_full): {d_stack:.3e}")
  print(f"for scale: the reference's own padded-vs-alone difference {leak:.3e}")

  model = registry.build_encoder(dict(name="zipformer", size="m"))
  shape = jax.ShapeDtypeStruct((8, 1000, 80), jnp.float32)
  shape_mask = jax.ShapeDtypeStruct((8, 1000), jnp.bool_)
  cost = jax.jit(functools.partial(model.apply, train=False)).lower(
      {"params": params}, shape, shape_mask).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  print(f"XLA cost analysis, forward of 8 x 10 s: {cost['flops'] / 1e9:.2f} "
        "GFLOP, all ops (reference: 159.09, matmul and convolution only)")


if __name__ == "__main__":
  main()
