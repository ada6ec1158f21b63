"""The base experiment config and its validation.

Every file under configs/ starts from `base_config()`, which is locked: an
experiment file or a `--config.key=value` override that names a key the base
does not have fails at once with that key's name, and ml_collections rejects
values of the wrong type. `validate(config)` then checks what types cannot
(names of encoders and objectives, batch and mesh sizes) before any device
work starts.
"""

import importlib.util
import os
import types

import ml_collections

DATA_SOURCES = ("records", "demo")
DTYPES = ("float32", "bfloat16")


def base_config() -> ml_collections.ConfigDict:
  """Returns the locked base config with every key an experiment may set."""
  c = ml_collections.ConfigDict()
  c.job = "train"           # what main.py runs: "train" | "study"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "records"  # "records": existing TFDS records; "demo": made here
  c.data.data_dir = ""       # TFDS data_dir; "" means <workdir>/data
  c.data.name = ""           # TFDS dataset name of the pre-training records
  c.data.train_split = "train"
  c.data.clip_seconds = 10.0
  c.data.num_threads = 2
  c.data.prefetch = 2
  c.data.max_tags = 32
  c.data.max_weak_labels = 16
  # The embedded demo world (audiopt/data/demo_world, audiopt/data/prepare).
  c.data.demo = ml_collections.ConfigDict()
  c.data.demo.num_clips = 600        # pre-training clips
  c.data.demo.num_task_clips = 240   # train clips per task (test: half)
  c.data.demo.vocab_size = 64        # UTS vocabulary size K
  c.data.demo.seed = 1234
  c.data.demo.min_seconds = 2.0      # pre-training clip lengths
  c.data.demo.max_seconds = 6.0
  c.data.demo.task_min_seconds = 2.0  # task clip lengths
  c.data.demo.task_max_seconds = 6.0
  c.data.demo.weak_drop_rate = 0.1   # weak-label noise: labels dropped,
  c.data.demo.weak_swap_rate = 0.05  # and swapped for a wrong class
  # Narrow the pre-training world ("" = everything); tasks stay complete.
  c.data.demo.events = ""            # event kinds, "speech,music,rain"
  c.data.demo.instruments = ""       # instruments, "piano,drums"
  c.data.demo.attributes = ""        # "speech.emotion=neutral|sad,..."
  c.data.demo.num_workers = 0        # generator processes; 0: one per core

  c.frontend = ml_collections.ConfigDict()
  c.frontend.fbank = ml_collections.ConfigDict()
  c.frontend.fbank.sample_rate = 16000
  c.frontend.fbank.num_mel_bins = 80
  c.frontend.fbank.frame_length_ms = 25.0
  c.frontend.fbank.frame_shift_ms = 10.0
  c.frontend.fbank.preemph_coeff = 0.97
  c.frontend.fbank.remove_dc_offset = True
  c.frontend.fbank.window_type = "povey"
  c.frontend.fbank.low_freq = 20.0
  c.frontend.fbank.high_freq = 0.0
  c.frontend.fbank.snip_edges = False
  c.frontend.fbank.dither = 0.0
  c.frontend.fbank.input_scale = 1.0
  c.frontend.use_spec_augment = True
  c.frontend.spec_augment = ml_collections.ConfigDict()
  c.frontend.spec_augment.num_time_masks = 2
  c.frontend.spec_augment.max_time_mask_frames = 40
  c.frontend.spec_augment.num_freq_masks = 2
  c.frontend.spec_augment.max_freq_mask_bins = 27

  c.encoder = ml_collections.ConfigDict()
  c.encoder.name = "transformer"
  c.encoder.size = "base"
  c.encoder.dtype = "float32"
  # Unset (None) options keep the encoder's own default; setting one that
  # the encoder does not have fails with the encoder's valid options.
  c.encoder.remat = ml_collections.config_dict.placeholder(bool)
  # What a rematerialised block keeps: a jax.checkpoint_policies name, e.g.
  # "nothing_saveable" (least memory) or "dots_with_no_batch_dims_saveable".
  c.encoder.remat_policy = ml_collections.config_dict.placeholder(str)
  c.encoder.scan_layers = ml_collections.config_dict.placeholder(bool)
  c.encoder.dropout_rate = ml_collections.config_dict.placeholder(float)
  # Transformer and ViT attention: "xla" (default, any device) or "cudnn"
  # (fused flash attention on GPU; bfloat16, no attention dropout).
  c.encoder.attention_impl = ml_collections.config_dict.placeholder(str)

  c.objective = ml_collections.ConfigDict()
  c.objective.name = "mtc"
  c.objective.target = "tags"        # mtc: "tags" | "weak_labels"
  c.objective.dropout_rate = 0.1
  # masked: spans of encoder steps masked, k input frames per encoder frame.
  c.objective.frames_per_step = 4    # encoder hop / 10 ms (ViT: patch_time)
  c.objective.mask_ratio = 0.5
  c.objective.mask_span = 5
  c.objective.head_hidden_dim = 512  # 0: linear head
  # multitask: "name:weight,..." e.g. "mtc:1.0,captioning:0.5".
  c.objective.tasks = ""
  # contrastive / siglip.
  c.objective.embed_dim = 1024       # shared audio-text width
  c.objective.text_encoder_size = "base"
  c.objective.chunked = False        # siglip: ring of ppermute blocks
  # captioning / par.
  c.objective.decoder_size = "base"
  c.objective.ar_fraction = 0.25     # captioning: share of causal batches
  c.objective.label_smoothing = 0.1

  c.text = ml_collections.ConfigDict()
  c.text.tokenizer = ""     # TextTokenizer JSON; "": WordPiece on the captions
  c.text.vocab_size = 8000  # WordPiece size when trained here
  c.text.max_len = 32       # caption tokens per clip (caption_ids width)
  # Special ids (the trained WordPiece's; set from the tokenizer at run time).
  c.text.pad_id = 0
  c.text.bos_id = 2
  c.text.eos_id = 3
  c.text.mask_id = 4

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 1000
  c.optimizer.end_learning_rate_factor = 0.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.98
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.01
  c.optimizer.clip_norm = 1.0
  c.optimizer.grad_accum_steps = 1
  # Eden schedule (schedule="eden"; warmup_steps is its warmup_batches). The
  # Zipformer recipe: learning_rate 0.045, warmup_steps 500.
  c.optimizer.eden_lr_batches = 7500     # B: batches of the first decay
  c.optimizer.eden_lr_epochs = 3.5       # epochs of Eden3's second decay
  c.optimizer.eden_steps_per_epoch = 0   # > 0: Eden3 (B2 = lr_epochs x this)
  c.optimizer.eden_warmup_start = 0.5    # lr factor at batch 0 of the warm-up
  # ScaledAdam (name="scaled_adam"; needs clip_norm = 0, it clips itself;
  # b1, b2 and eps above are its betas and eps).
  c.optimizer.clipping_scale = 2.0       # clip at this x median norm; 0: off
  c.optimizer.scalar_lr_scale = 0.1      # lr factor of scalars and size updates
  c.optimizer.param_min_rms = 1e-5       # floor of the RMS that scales updates
  c.optimizer.param_max_rms = 3.0        # size updates keep RMS below this
  c.optimizer.scalar_max = 10.0          # scalar parameters clamped to +-this
  c.optimizer.size_update_period = 4     # steps between size updates
  c.optimizer.clipping_update_period = 100  # steps between threshold estimates

  c.train = ml_collections.ConfigDict()
  c.train.global_batch_size = 64
  c.train.num_steps = 100_000
  c.train.log_every = 100
  c.train.checkpoint_every = 2000
  c.train.keep_checkpoints = 3
  c.train.async_checkpoint = True
  # Skip the update when the loss exceeds factor x the mean of the last
  # `window` applied losses (decided inside the jitted step).
  c.train.loss_spike = ml_collections.ConfigDict()
  c.train.loss_spike.enabled = False
  c.train.loss_spike.factor = 3.0
  c.train.loss_spike.window = 20

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1           # -1: every device not used by the other axes
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.sharding = "fsdp"        # a preset of audiopt.train.sharding.RULE_PRESETS

  c.eval = ml_collections.ConfigDict()
  c.eval.tasks = ""          # comma-separated TFDS names of probe tasks
  c.eval.retrieval_tasks = ""  # caption-audio record sets (text-tower runs)
  c.eval.train_split = "train"
  c.eval.validation_split = "validation"  # early stopping, when the task has
  c.eval.test_split = "test"              # it (else carved from train)
  c.eval.batch_size = 32     # audio chunks per embedding batch
  c.eval.clip_seconds = 0.0  # > 0: embed only each clip's first seconds
  c.eval.chunk_seconds = 10.0  # longer clips: chunks, frames concatenated
  c.eval.layer = "last"      # or an encoder intermediate, e.g. "layer_3"
  c.eval.cache_dir = ""      # embedding cache; "": <workdir>/embeddings
  # Both poolings are always reported (the paper's rankings flip); + kNN.
  c.eval.probes = "mean,attention,knn"
  c.eval.knn_k = 10
  c.eval.knn_temperature = 0.07
  c.eval.compare_random_init = True
  c.eval.probe_epochs = 200
  c.eval.probe_learning_rate = 1e-3

  # job="study" (audiopt/study): runs that differ from this config by a few
  # keys, each trained (or reused) and evaluated on eval.tasks; results in
  # <workdir>/results.{csv,md} and plots. "name: key=value, ...; name2: ..."
  # where key is a config key or "data" (a data variant: uts, uts_k<K>,
  # weak_labels, captions_<quality>); see audiopt/study/spec.py.
  c.study = ml_collections.ConfigDict()
  c.study.runs = ""
  c.study.plots = True

  c.lock()
  return c


def config_module(path: str | os.PathLike) -> types.ModuleType:
  """Imports the config file at `path` as a fresh module.

  configs/ is not a package on every path configs are loaded from (main.py's
  `--config=`, notebooks, tests), so config files reach each other through
  this rather than through imports.

  Args:
    path: a Python file defining `get_config(arg=None)`.

  Returns:
    The executed module.
  """
  path = os.fspath(path)
  name = "audiopt_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None:
    raise ValueError(f"{path!r} is not a Python config file (.py)")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config_file(path: str | os.PathLike, arg: str | None = None
                     ) -> ml_collections.ConfigDict:
  """Returns `get_config(arg)` of the config file at `path`.

  The same config `--config=path:arg` gives main.py, without its command-line
  overrides.
  """
  return config_module(path).get_config(arg)


def parse_arg(arg: str | None) -> dict[str, str]:
  """Parses the `get_config(arg)` string "k=v,flag" into {"k": "v", "flag": ""}."""
  out = {}
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    out[key.strip()] = value.strip()
  return out


def check_arg(options: dict[str, str], allowed: tuple[str, ...],
              config_file: str) -> None:
  """Raises ValueError naming any `get_config` option not in `allowed`."""
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(f"{config_file}: unknown config option(s) {unknown}; "
                     f"valid: {sorted(allowed)}")


def runlocal(config: ml_collections.ConfigDict, options: dict[str, str]
             ) -> None:
  """Shrinks an experiment in place to the `runlocal` laptop smoke test.

  Demo records, 4-second clips, a tiny encoder (unless the `size` option
  names one), batch 16, 20 steps, no evaluation. Text and decoder towers are
  the configs' own business.
  """
  config.data.source = "demo"
  config.data.clip_seconds = 4.0
  config.encoder.size = options.get("size", "tiny")
  config.train.global_batch_size = 16
  config.train.num_steps = 20
  config.train.log_every = 5
  config.train.checkpoint_every = 10
  config.optimizer.warmup_steps = 5
  config.eval.tasks = ""


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None
             ) -> None:
  """Checks the config; raises ValueError naming the first bad key.

  Args:
    config: an experiment config built on `base_config()`.
    num_devices: the global device count, to check mesh and batch sizes.
  """
  # Imported here so that `audiopt.config` stays importable without JAX work.
  import jax  # pylint: disable=g-import-not-at-top
  from audiopt import objectives  # pylint: disable=g-import-not-at-top
  from audiopt.models import layers  # pylint: disable=g-import-not-at-top
  from audiopt.models import registry  # pylint: disable=g-import-not-at-top
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top

  def fail(key, msg):
    raise ValueError(f"config {key}: {msg}")

  if config.job not in ("train", "study"):
    fail("job", f"{config.job!r} is not a job; valid: ['study', 'train']")
  if config.job == "study" and not config.study.runs.strip():
    fail("study.runs", "is empty; a study lists its runs")
  if config.data.source not in DATA_SOURCES:
    fail("data.source", f"{config.data.source!r}; valid: {list(DATA_SOURCES)}")
  if config.data.source == "records" and not config.data.name:
    fail("data.name", "is empty; name the TFDS dataset of the records")
  if config.data.clip_seconds <= 0:
    fail("data.clip_seconds", "must be > 0")
  if config.data.source == "demo":
    from audiopt.data import prepare  # pylint: disable=g-import-not-at-top
    try:
      prepare.check_demo_config(config.data.demo)
    except ValueError as e:
      fail("data.demo", str(e))
  if config.encoder.name not in registry.list_encoders():
    fail("encoder.name", f"{config.encoder.name!r}; valid: "
         f"{registry.list_encoders()}")
  sizes = registry.get_encoder_class(config.encoder.name).SIZES
  if config.encoder.size not in sizes:
    fail("encoder.size", f"{config.encoder.size!r} for encoder "
         f"{config.encoder.name!r}; valid: {sorted(sizes)}")
  policy = config.encoder.remat_policy
  if policy is not None and not callable(
      getattr(jax.checkpoint_policies, policy, None)):
    fail("encoder.remat_policy", f"{policy!r} is not in "
         "jax.checkpoint_policies; valid: " + str(sorted(
             n for n in dir(jax.checkpoint_policies) if not n.startswith("_")
             and callable(getattr(jax.checkpoint_policies, n)))))
  impl = config.encoder.attention_impl
  if impl is not None and impl not in layers.ATTENTION_IMPLS:
    fail("encoder.attention_impl",
         f"{impl!r}; valid: {list(layers.ATTENTION_IMPLS)}")
  if config.encoder.dtype not in DTYPES:
    fail("encoder.dtype", f"{config.encoder.dtype!r}; valid: {list(DTYPES)}")
  if config.objective.name not in objectives.list_objectives():
    fail("objective.name", f"{config.objective.name!r}; valid: "
         f"{objectives.list_objectives()}")
  if config.sharding not in sharding.RULE_PRESETS:
    fail("sharding", f"{config.sharding!r}; valid: "
         f"{sorted(sharding.RULE_PRESETS)}")
  for key in ("num_steps", "global_batch_size", "log_every",
              "checkpoint_every"):
    if config.train[key] <= 0:
      fail(f"train.{key}", "must be > 0")
  accum = config.optimizer.grad_accum_steps
  if accum < 1 or config.train.global_batch_size % accum:
    fail("optimizer.grad_accum_steps",
         f"{accum} must be >= 1 and divide train.global_batch_size "
         f"{config.train.global_batch_size}")
  if num_devices is not None:
    axes = {a: config.mesh[a] for a in ("data", "fsdp", "tensor")}
    fixed = 1
    for a, n in axes.items():
      if n != -1 and n < 1:
        fail(f"mesh.{a}", f"{n} must be >= 1 or -1")
      fixed *= n if n != -1 else 1
    if num_devices % fixed:
      fail("mesh", f"{axes} does not fit {num_devices} devices")
    batch_shards = num_devices // config.mesh.tensor
    micro = config.train.global_batch_size // accum
    if micro % batch_shards:
      fail("train.global_batch_size",
           f"{config.train.global_batch_size} / grad_accum_steps {accum} = "
           f"{micro} is not divisible by the {batch_shards} batch shards "
           "(data x fsdp devices)")
  probes = [p.strip() for p in config.eval.probes.split(",") if p.strip()]
  for probe in probes:
    if probe not in ("mean", "attention", "knn"):
      fail("eval.probes", f"{probe!r}; valid: ['attention', 'knn', 'mean']")
  if not {"mean", "attention"} <= set(probes):
    fail("eval.probes", f"{config.eval.probes!r} must hold both poolings, "
         "'mean' and 'attention' (both are always reported)")
  if config.eval.chunk_seconds <= 0:
    fail("eval.chunk_seconds", "must be > 0")
  if config.eval.knn_k < 1 or config.eval.knn_temperature <= 0:
    fail("eval.knn_k", "knn_k must be >= 1 and knn_temperature > 0")
