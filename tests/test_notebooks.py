"""The notebooks run top to bottom on a checkpoint the test trains."""

import os

import nbclient
import nbformat
import pytest

from audiopt.train import trainer
from conftest import quick_demo_config

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "notebooks")


@pytest.fixture(scope="module")
def demo_run(demo_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  trainer.train(quick_demo_config(demo_data_dir, num_steps=2,
                                  checkpoint_every=2), str(workdir))
  return workdir


def _execute(name, env):
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return nb


def _text(nb):
  return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))


def test_inspect_checkpoint(demo_run):
  nb = _execute("inspect_checkpoint.ipynb",
                {"AUDIOPT_WORKDIR": str(demo_run), "XLA_FLAGS": ""})
  text = _text(nb)
  assert "step 2, encoder transformer/tiny" in text
  assert "total" in text and "true tags:" in text
  assert "nearest neighbours of" in text
