"""The objective config files load, validate and pick their objective."""

import pytest

from audiopt import config as config_lib

_load = config_lib.load_config_file


@pytest.mark.parametrize("path,arg,objective", [
    ("configs/masked.py", None, "masked"),
    ("configs/masked.py", "encoder=vit,runlocal", "masked"),
    ("configs/multitask.py", None, "multitask"),
    ("configs/multitask.py", "aux=masked,lambda=0.3,runlocal", "multitask"),
    ("configs/contrastive.py", None, "contrastive"),
    ("configs/contrastive.py", "runlocal", "contrastive"),
    ("configs/siglip.py", "chunked,runlocal", "siglip"),
    ("configs/captioning.py", None, "captioning"),
    ("configs/captioning.py", "ar=0.5,runlocal", "captioning"),
    ("configs/par.py", None, "par"),
    ("configs/par.py", "runlocal", "par"),
])
def test_objective_configs_validate(path, arg, objective):
  config = _load(path, arg)
  assert config.objective.name == objective
  if config.data.source == "records":
    config.data.name = "uts_records"  # what the user passes
  config_lib.validate(config, num_devices=8)


def test_options_reach_the_objective():
  vit = _load("configs/masked.py", "encoder=vit,size=b")
  assert vit.objective.frames_per_step == 16
  assert _load("configs/masked.py").objective.frames_per_step == 4
  assert not _load("configs/masked.py").frontend.use_spec_augment
  tasks = _load("configs/multitask.py", "aux=masked,lambda=0.3").objective.tasks
  assert tasks == "mtc:1.0,masked:0.3"
  default = _load("configs/multitask.py").objective.tasks
  assert default == "mtc:1.0,captioning:0.5"
  assert _load("configs/siglip.py", "chunked").objective.chunked
  assert not _load("configs/siglip.py").objective.chunked
  assert _load("configs/contrastive.py").objective.embed_dim == 1024
  assert _load("configs/captioning.py").objective.ar_fraction == 0.25
  assert _load("configs/captioning.py", "ar=0.5").objective.ar_fraction == 0.5
  with pytest.raises(ValueError, match="chunkd"):
    _load("configs/siglip.py", "chunkd")
