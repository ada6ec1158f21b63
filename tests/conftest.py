"""Test set-up: 8 simulated CPU devices so that sharding is exercised."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")


import pytest  # noqa: E402


def quick_demo_config(data_dir, **train):
  """The quick demo config reading records from `data_dir`."""
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config("quick")
  config.data.data_dir = str(data_dir)
  config.train.log_every = 1
  for k, v in train.items():
    config.train[k] = v
  return config


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
  """TFDS data_dir holding the quick demo records, written once a session."""
  from audiopt.data import prepare  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp("demo_data")
  prepare.write_demo(str(path), quick_demo_config(path).data.demo)
  return path
