"""The launch scripts parse and start `python -m audiopt.main` as main.py expects."""

import os
import re
import shlex
import string
import subprocess

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = ("local.sh", "multiprocess_cpu.sh", "tpu_vm.sh", "slurm_gpu.sbatch",
           "xpk.sh")


def _main_flags() -> set[str]:
  with open(os.path.join(REPO, "audiopt", "main.py")) as f:
    text = f.read()
  return set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', text))


def _check_main_command(argv: list[str], config: str, workdir: str):
  start = argv.index("audiopt.main")
  assert argv[start - 2:start] == ["python", "-m"], argv
  flags = [a for a in argv[start + 1:] if a.startswith("--")]
  names = {a[2:].split("=")[0].split(".")[0] for a in flags}
  assert names <= _main_flags(), (names, _main_flags())
  assert f"--config={config}" in flags and f"--workdir={workdir}" in flags


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
  subprocess.run(["bash", "-n", os.path.join(LAUNCH, script)], check=True)


def _fake_bin(tmp_path, name):
  """An executable `name` on PATH that writes its argv, NUL-separated."""
  bindir = tmp_path / "bin"
  bindir.mkdir(exist_ok=True)
  exe = bindir / name
  exe.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > {tmp_path}/{name}.args\n'
                 f'env > {tmp_path}/{name}.env\n')
  exe.chmod(0o755)
  return dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")


def _args(tmp_path, name):
  return (tmp_path / f"{name}.args").read_text().split("\0")[:-1]


def test_local_runs_main(tmp_path):
  env = _fake_bin(tmp_path, "python")
  subprocess.run(["bash", os.path.join(LAUNCH, "local.sh"), "configs/mtc.py",
                  "/tmp/w", "--config.train.num_steps=3"], env=env, check=True)
  _check_main_command(["python"] + _args(tmp_path, "python"),
                      "configs/mtc.py", "/tmp/w")


def test_slurm_runs_main_with_auto_distributed(tmp_path):
  env = _fake_bin(tmp_path, "srun")
  subprocess.run(["bash", os.path.join(LAUNCH, "slurm_gpu.sbatch"),
                  "configs/mtc.py", "/shared/w", "--config.mesh.fsdp=8"],
                 env=env, check=True)
  argv = _args(tmp_path, "srun")
  _check_main_command(argv, "configs/mtc.py", "/shared/w")
  assert "--config.mesh.fsdp=8" in argv
  assert "AUDIOPT_DISTRIBUTED=auto" in (tmp_path / "srun.env").read_text()


def test_tpu_vm_runs_main_on_all_workers(tmp_path):
  env = _fake_bin(tmp_path, "gcloud")
  subprocess.run(["bash", os.path.join(LAUNCH, "tpu_vm.sh"), "my-tpu",
                  "us-east5-a", "configs/mtc.py", "gs://b/r",
                  "--config.data.name=uts records"], env=env, check=True)
  argv = _args(tmp_path, "gcloud")
  assert "--worker=all" in argv and "--zone=us-east5-a" in argv
  remote = [a for a in argv if a.startswith("--command=")][0]
  words = shlex.split(remote[len("--command="):].replace("\n", " "))
  _check_main_command(words, "configs/mtc.py", "gs://b/r")
  assert "AUDIOPT_DISTRIBUTED=auto" in words
  assert "--config.data.name=uts records" in words


def test_xpk_command(tmp_path):
  env = dict(os.environ, XPK_DRY_RUN="1", XPK_ZONE="us-east5-a")
  out = subprocess.run(["bash", os.path.join(LAUNCH, "xpk.sh"), "cl",
                        "v5p-128", "2", "configs/mtc.py", "gs://b/r",
                        "--config.mesh.fsdp=16"], env=env, check=True,
                       capture_output=True, text=True).stdout
  argv = shlex.split(out)
  assert argv[:3] == ["xpk", "workload", "create"]
  assert {"--cluster=cl", "--tpu-type=v5p-128", "--num-slices=2",
          "--zone=us-east5-a"} <= set(argv)
  command = [a for a in argv if a.startswith("--command=")][0]
  words = shlex.split(command[len("--command="):])
  _check_main_command(words, "configs/mtc.py", "gs://b/r")
  assert "AUDIOPT_DISTRIBUTED=auto" in words
  assert "--config.mesh.fsdp=16" in words


def test_gke_jobset_manifest():
  with open(os.path.join(LAUNCH, "gke_jobset.yaml")) as f:
    template = string.Template(f.read())
  fields = dict(
      IMAGE="img:1", JOB_NAME="mtc", CONFIG="configs/mtc.py",
      WORKDIR="gs://b/r", OVERRIDES='"--config.data.name=uts_records"',
      TPU_ACCELERATOR="tpu-v5p-slice", TPU_TOPOLOGY="4x4x4",
      HOSTS_PER_SLICE="16", CHIPS_PER_HOST="4", NUM_SLICES="2")
  doc = yaml.safe_load(template.substitute(fields))
  assert doc["kind"] == "JobSet" and doc["metadata"]["name"] == "mtc"
  job = doc["spec"]["replicatedJobs"][0]
  assert job["replicas"] == 2
  assert job["template"]["spec"]["parallelism"] == 16
  pod = job["template"]["spec"]["template"]["spec"]
  container = pod["containers"][0]
  assert container["image"] == "img:1"
  _check_main_command(container["command"], "configs/mtc.py", "gs://b/r")
  assert "--config.data.name=uts_records" in container["command"]
  assert {"name": "AUDIOPT_DISTRIBUTED", "value": "auto"} in container["env"]
  assert container["resources"]["limits"]["google.com/tpu"] == 4
  assert pod["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "4x4x4"
  # Empty overrides still parse (a trailing comma-free list).
  fields["OVERRIDES"] = ""
  doc = yaml.safe_load(template.substitute(fields))
  command = doc["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
      "spec"]["containers"][0]["command"]
  assert command[-1] == "--workdir=gs://b/r"
