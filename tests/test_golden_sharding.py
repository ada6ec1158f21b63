"""Parameter shardings of the base configs match the stored goldens.

Regenerate after an intended change:
  python -m audiopt.tools.golden_sharding --write
"""

import json
import os

import jax
import numpy as np
import pytest

from audiopt import aot
from audiopt.objectives import DatasetInfo
from audiopt.tools import golden_sharding
from audiopt.train import sharding

P = jax.sharding.PartitionSpec


@pytest.mark.parametrize("encoder, size", golden_sharding.ENCODERS)
def test_matches_golden(encoder, size):
  for preset in golden_sharding.MESHES:
    path = os.path.join(golden_sharding.GOLDEN_DIR,
                        golden_sharding.golden_name(encoder, preset))
    with open(path) as f:
      want = json.load(f)
    got = golden_sharding.compute(encoder, size, preset)
    lines = golden_sharding.diff(want, got)
    assert not lines, (f"{path} differs (regenerate with python -m "
                       "audiopt.tools.golden_sharding --write if intended):\n"
                       + "\n".join(lines))
    if preset != "data":
      # FSDP keeps under 1% of the parameter bytes whole on every device.
      assert got["replicated_fraction"] < 0.01, path


def test_diff_reports_a_changed_spec():
  want = {"config": "c", "num_tags": 1, "mesh": {}, "replicated_fraction": 0,
          "params": {"a": {"spec": ["fsdp", None]}, "b": {"spec": [None]}}}
  got = json.loads(json.dumps(want))
  got["params"]["a"]["spec"] = [None, None]
  del got["params"]["b"]
  lines = golden_sharding.diff(want, got)
  assert lines == ["a: golden {'spec': ['fsdp', None]}, now "
                   "{'spec': [None, None]}",
                   "b: in the golden, no longer a parameter"]


def test_fit_spec_drops_indivisible_axes(caplog):
  mesh = {"data": 1, "fsdp": 2, "tensor": 4}
  assert sharding.fit_spec((768, 30522), P("fsdp", "tensor"), mesh,
                           "head") == P("fsdp", None)
  assert "head: dimension 1 of size 30522" in caplog.text
  assert sharding.fit_spec((30522,), P(("fsdp", "tensor")), mesh) == P(
      "fsdp")
  assert sharding.fit_spec((7, 8), P("fsdp", ("fsdp", "tensor")), mesh) == P(
      None, ("fsdp", "tensor"))


def test_odd_vocabulary_under_tensor_4_initialises():
  """A 30522-tag head under tensor=4 is replicated on that axis, not a crash."""
  from audiopt.train import step as step_lib  # pylint: disable=g-import-not-at-top
  from configs import mtc  # pylint: disable=g-import-not-at-top
  config = mtc.get_config("encoder=transformer,size=tiny")
  config.data.clip_seconds = 1.0
  config.sharding = "fsdp_tensor"
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 2, 4
  setup = aot.build_setup(config, DatasetInfo(num_tags=30522,
                                              num_weak_labels=5))
  state = step_lib.init_state(setup, jax.random.key(0))
  kernel = state.params["objective"]["head"]["kernel"]
  assert kernel.sharding.spec == P("fsdp", None)
  assert kernel.addressable_shards[0].data.shape == (32, 30522)
  wi = state.params["encoder"]["layer_0"]["mlp"]["wi"]["kernel"]
  assert wi.sharding.spec == P("fsdp", "tensor")


def test_check_replication():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  rep = jax.sharding.NamedSharding(mesh, P())
  fsdp = jax.sharding.NamedSharding(mesh, P("fsdp"))
  params = {"w": jax.ShapeDtypeStruct((96, 4), np.float32, sharding=fsdp),
            "b": jax.ShapeDtypeStruct((32,), np.float32, sharding=rep)}
  fraction, leaves = sharding.replicated_fraction(params)
  assert fraction == pytest.approx(32 / (96 * 4 + 32))
  assert leaves == [("['b']", 128)]
  assert sharding.check_replication(params, 0.1) == fraction
  with pytest.raises(ValueError, match=r"7.7% of parameter bytes .* \['b'\]"):
    sharding.check_replication(params, 0.05)
  assert sharding.check_replication(params, 0.05, action="warn") == fraction
  with pytest.raises(ValueError, match="action 'loud'"):
    sharding.check_replication(params, 0.05, action="loud")
