"""Config files, options and validation."""

import subprocess
import sys

import pytest

from audiopt import config as config_lib

_load = config_lib.load_config_file


@pytest.mark.parametrize("path,arg", [
    ("configs/mtc.py", None),
    ("configs/mtc.py", "encoder=transformer,runlocal"),
    ("configs/mtc.py", "target=weak_labels"),
    ("configs/demo.py", None),
    ("configs/demo.py", "quick"),
])
def test_config_files_validate(path, arg):
  config = _load(path, arg)
  if config.data.source == "records":
    with pytest.raises(ValueError, match="data.name"):
      config_lib.validate(config, num_devices=8)
    config.data.name = "uts_records"  # what the user passes on the command line
  config_lib.validate(config, num_devices=8)


def test_unknown_option_names_it():
  with pytest.raises(ValueError, match="runlcoal"):
    _load("configs/mtc.py", "runlcoal")


def test_locked_base_rejects_typo_key():
  config = config_lib.base_config()
  with pytest.raises(AttributeError, match="num_stpes"):
    config.train.num_stpes = 3


@pytest.mark.parametrize("key,value,match", [
    ("encoder.name", "conformerx", "encoder.name"),
    ("objective.name", "nope", "objective.name"),
    ("sharding", "weird", "sharding"),
    ("train.global_batch_size", 12, "train.global_batch_size"),
    ("optimizer.grad_accum_steps", 3, "grad_accum_steps"),
])
def test_validate_names_bad_key(key, value, match):
  config = _load("configs/demo.py")
  section, _, leaf = key.rpartition(".")
  (config[section] if section else config)[leaf] = value
  with pytest.raises(ValueError, match=match):
    config_lib.validate(config, num_devices=8)


def test_cli_override_typo_fails_naming_key(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "audiopt.main", "--config=configs/demo.py:quick",
       f"--workdir={tmp_path}", "--config.train.num_stpes=3"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "num_stpes" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_cli_override_wrong_type_fails(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "audiopt.main", "--config=configs/demo.py:quick",
       f"--workdir={tmp_path}", "--config.train.num_steps=many"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "num_steps" in proc.stderr


def test_remat_policy_is_checked_and_reaches_the_encoder():
  config = _load("configs/mtc.py", "encoder=transformer,runlocal")
  config.encoder.remat_policy = "nothing_savable"
  with pytest.raises(ValueError, match=r"encoder.remat_policy.*"
                     r"'nothing_savable'.*nothing_saveable"):
    config_lib.validate(config, 8)
  config.encoder.remat = True
  config.encoder.remat_policy = "nothing_saveable"
  config_lib.validate(config, 8)
  from audiopt.models import registry  # pylint: disable=g-import-not-at-top
  encoder = registry.build_encoder(config.encoder)
  assert encoder.remat and encoder.remat_policy == "nothing_saveable"


def test_attention_impl_is_checked_and_reaches_the_blocks():
  config = _load("configs/mtc.py", "encoder=vit,runlocal")
  config.encoder.attention_impl = "flash"
  with pytest.raises(ValueError, match=r"encoder.attention_impl.*'flash'"
                     r".*'xla', 'cudnn'"):
    config_lib.validate(config, 8)
  config.encoder.attention_impl = "cudnn"
  config_lib.validate(config, 8)
  from audiopt.models import registry  # pylint: disable=g-import-not-at-top
  assert registry.build_encoder(config.encoder).attention_impl == "cudnn"


def test_config_module_loads_a_file_by_path(tmp_path):
  (tmp_path / "base_cfg.py").write_text(
      "from audiopt import config as config_lib\n"
      "def get_config(arg=None):\n"
      "  c = config_lib.base_config()\n"
      "  c.train.num_steps = int(arg or 7)\n"
      "  return c\n")
  (tmp_path / "child_cfg.py").write_text(
      "import os\n"
      "from audiopt import config as config_lib\n"
      "def get_config(arg=None):\n"
      "  here = os.path.dirname(os.path.abspath(__file__))\n"
      "  base = config_lib.config_module(os.path.join(here, 'base_cfg.py'))\n"
      "  return base.get_config('11')\n")
  assert _load(tmp_path / "base_cfg.py").train.num_steps == 7
  assert _load(tmp_path / "child_cfg.py").train.num_steps == 11
  with pytest.raises(FileNotFoundError, match="nothere.py"):
    _load(tmp_path / "nothere.py")
  (tmp_path / "cfg.txt").write_text("")
  with pytest.raises(ValueError, match="cfg.txt.*not a Python config"):
    _load(tmp_path / "cfg.txt")
