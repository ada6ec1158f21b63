"""audiopt: data-centric pre-training of general-purpose audio encoders in JAX."""

import setuptools

INSTALL_REQUIRES = [
    "absl-py",
    "array-record",
    "clu",
    "etils[epath]",
    "flax>=0.10",
    "grain>=0.2.10",
    "jax>=0.6",
    "matplotlib",
    "ml-collections",
    "safetensors",
    "numpy",
    "optax",
    "orbax-checkpoint",
    "scipy",
    "soundfile",
    "soxr",
    "tensorboard",
    "tensorflow-cpu",
    "tensorflow-datasets>=4.9.7",
    "tokenizers",
    "tqdm",
]

EXTRAS = {
    # Apache Beam runners for the ingest and records stages past one machine.
    "beam": ["apache-beam"],
    # The reference libraries some parity tests compare with (they skip
    # without them); on CPU-only machines install torch's CPU build first.
    "torch": ["torch", "transformers"],
    # Caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE) of the
    # captioning evaluation; METEOR and SPICE also need Java.
    "captioning": ["pycocoevalcap"],
    "test": [
        "apache-beam",
        "hypothesis",
        "kaldi-native-fbank",
        "ipykernel",
        "nbclient",
        "nbformat",
        "pycocoevalcap",
        "pytest",
        "pytest-xdist",
    ],
}

setuptools.setup(
    name="audiopt",
    version="0.1.0",
    description=__doc__,
    packages=setuptools.find_packages(include=["audiopt", "audiopt.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
