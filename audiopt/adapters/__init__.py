"""Benchmark adapters (the optional `torch` extra).

  hear   the HEAR 2021 common API: `audiopt.adapters.hear` is the module
         hear-eval-kit / hear-validator import (load_model,
         get_scene_embeddings, get_timestamp_embeddings)
  xares  an X-ARES encoder class (`AudioptEncoder`)

Both wrap `frozen_encoder.FrozenEncoder`: a torch module whose forward
converts torch tensors to numpy, calls the jitted JAX encoder of a
restored run, and returns torch tensors on the input's device.
"""
