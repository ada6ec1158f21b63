"""Embedding extraction on the mesh (chunks, layers) and its on-disk cache."""

import os

import jax
import numpy as np
import pytest

from audiopt import config as config_lib
from audiopt.audio import io as audio_io
from audiopt.evaluate import cache as cache_lib
from audiopt.evaluate import embeddings
from audiopt.objectives import DatasetInfo
from audiopt.train import step as step_lib

RATE = 16000


@pytest.fixture(scope="module")
def model():
  """A tiny transformer + MTC model on the 8-device mesh, and its params."""
  config = config_lib.base_config()
  config.encoder.size = "tiny"
  config.data.clip_seconds = 1.0
  config.train.global_batch_size = 8
  setup = step_lib.build(config, DatasetInfo(num_tags=4), {})
  state = step_lib.init_state(setup, jax.random.key(0))
  return setup, state.params


def _embed_fn(setup, layer=None):
  return embeddings.make_embed_fn(setup.model, setup.mesh, setup.rules,
                                  layer=layer)


def _waves(seed, seconds):
  rng = np.random.default_rng(seed)
  return [(0.1 * rng.normal(size=int(s * RATE))).astype(np.float32)
          for s in seconds]


def test_long_clip_is_embedded_in_chunks(model):
  setup, params = model
  fn = _embed_fn(setup)
  kw = dict(batch_size=8, chunk_seconds=1.0, sample_rate=RATE,
            mesh=setup.mesh)
  long, short = _waves(0, [3.0, 0.5])
  got = embeddings.embed_waveforms(fn, params, [long, short], **kw)
  pieces = embeddings.embed_waveforms(
      fn, params, [long[:RATE], long[RATE:2 * RATE], long[2 * RATE:]], **kw)
  want = np.concatenate([p[m] for p, m in zip(pieces["frames"],
                                              pieces["mask"])])
  n = int(got["mask"][0].sum())
  assert n == len(want) and got["mask"][0, :n].all()
  np.testing.assert_allclose(got["frames"][0, :n], want, atol=1e-5)
  # The short clip: padded to the longest clip, its padding masked and zero.
  m = int(got["mask"][1].sum())
  assert 0 < m < n and not got["mask"][1, m:].any()
  assert not got["frames"][1, m:].any()
  # max_seconds keeps the first seconds only.
  cut = embeddings.embed_waveforms(fn, params, [long], max_seconds=1.0, **kw)
  np.testing.assert_allclose(cut["frames"][0][cut["mask"][0]],
                             pieces["frames"][0][pieces["mask"][0]],
                             atol=1e-5)


def test_named_intermediate_layer(model):
  setup, params = model
  names = embeddings.layer_names(setup.model, params)
  assert names == ["last", "layer_0", "layer_1"]
  kw = dict(batch_size=8, chunk_seconds=1.0, sample_rate=RATE,
            mesh=setup.mesh)
  wav = _waves(1, [1.0])
  last = embeddings.embed_waveforms(_embed_fn(setup), params, wav, **kw)
  first = embeddings.embed_waveforms(_embed_fn(setup, "layer_0"), params, wav,
                                     **kw)
  assert first["frames"].shape == last["frames"].shape
  assert not np.allclose(first["frames"], last["frames"])
  with pytest.raises(ValueError, match=r"valid layers: \['last', 'layer_0'"):
    embeddings.embed_waveforms(_embed_fn(setup, "layer_9"), params, wav, **kw)


class _Records(list):
  """A list of record dicts with the `path` a RecordSource has."""
  path = ""


def test_extract_cached_computes_once_per_key(model, tmp_path):
  setup, params = model
  source = _Records(
      {"clip_id": f"c{i}", "audio": audio_io.encode_flac(w), "duration":
       len(w) / RATE, "label_ids": np.arange(i % 3)}
      for i, w in enumerate(_waves(2, [0.6, 1.3, 0.9])))
  source.path = str(tmp_path / "records")
  cache = cache_lib.EmbeddingCache(str(tmp_path / "cache"))
  model_id = cache_lib.model_id(params, 7)
  assert model_id.startswith("step7-")
  options = embeddings.ExtractOptions(batch_size=8, chunk_seconds=1.0)

  def extract(layer="last", mid=model_id):
    return embeddings.extract_cached(
        _embed_fn(setup, layer), params, source, task="toy", split="train",
        model_id=mid, options=embeddings.ExtractOptions(
            batch_size=8, chunk_seconds=1.0, layer=layer),
        mesh=setup.mesh, cache=cache)

  first = extract()
  assert (cache.hits, cache.misses) == (0, 1)
  again = extract()
  assert (cache.hits, cache.misses) == (1, 1)
  for k in ("frames", "mask", "label_ids", "clip_id"):
    np.testing.assert_array_equal(first[k], again[k])
  assert first["label_ids"].tolist() == [[-1, -1], [0, -1], [0, 1]]
  assert list(first["clip_id"]) == ["c0", "c1", "c2"]
  extract(layer="layer_0")          # another layer: another entry
  extract(mid="step8-0123456789abcdef")  # another checkpoint: another entry
  assert cache.misses == 3
  files = [f for _, _, fs in os.walk(cache.directory) for f in fs]
  assert len(files) == 3 and all(f.endswith(".npz") for f in files)
  assert options.layer == "last"


def test_cache_entries_are_checked_and_atomic(tmp_path):
  cache = cache_lib.EmbeddingCache(str(tmp_path))
  key = cache_lib.CacheKey.make("step1-abc", "task/a", "test", None,
                                {"chunk_seconds": 10.0})
  assert cache.load(key) is None
  cache.save(key, {"x": np.arange(3)})
  np.testing.assert_array_equal(cache.load(key)["x"], np.arange(3))
  assert not [f for f in os.listdir(os.path.dirname(cache.path(key)))
              if f.endswith(".tmp")]
  other = cache_lib.CacheKey.make("step1-abc", "task/a", "test", None,
                                  {"chunk_seconds": 5.0})
  assert cache.path(other) != cache.path(key) and cache.load(other) is None
  with open(cache.path(key), "wb") as f:  # damaged: recomputed
    f.write(b"not an npz")
  assert cache.load(key) is None
  calls = []
  got = cache.get_or_compute(key, lambda: calls.append(1) or {"y": [1, 2]})
  assert calls == [1] and got["y"].tolist() == [1, 2]
  assert cache.get_or_compute(key, lambda: calls.append(1))["y"].tolist() == [
      1, 2]
  assert calls == [1]


def test_params_fingerprint_follows_the_weights(model):
  _, params = model
  a = cache_lib.params_fingerprint(params)
  assert a == cache_lib.params_fingerprint(params)
  changed = jax.tree.map(lambda x: x, params)
  leaves, treedef = jax.tree.flatten(changed)
  leaves[-1] = leaves[-1] + 1e-3
  assert cache_lib.params_fingerprint(jax.tree.unflatten(treedef, leaves)) != a
  host = jax.device_get(params)  # same values, one device: same statistics
  assert len(cache_lib.params_fingerprint(host)) == 16
