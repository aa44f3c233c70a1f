"""Learned optimizers that learn to regularize (Sahoo & Krishnan 2025, arXiv:2510.08968).

>>> net = load_lopt("lopt/lopt_sam.pt")
>>> opt = LearnedOptimizer(model.parameters(), net)     # a torch.optim.Optimizer

- :mod:`antireg.optimizers.learned`: the coordinate-wise learned optimizer (LSTM or MLP),
  :class:`LearnedOptimizer`, and its checkpoint reader (there, below the sweep, which trains with it);
- :mod:`.tasks`: optimizee tasks (MLP, MLP-ReLU, CNN on digits / MNIST t10k; quadratics);
- :mod:`.objectives`: plain and regularized (SAM, GSAM, GAM, any gradient rule) meta-objectives;
- :mod:`.meta`: meta-training by truncated backpropagation through unrolls;
- :mod:`.io`: saving checkpoints (that cannot execute code); :mod:`.config`, :mod:`.cli`: ``antireg lopt``.

Evaluation is a sweep (``antireg run``, or ``antireg lopt eval`` on its packaged configs) in which a
learned optimizer is one of the optimizers (:mod:`antireg.optimizers`); the sharpness probes live
in :mod:`antireg.probes`.
"""

# Submodules load on first use, so `antireg --help` does not import torch.
LEARNED = "antireg.optimizers.learned"
_EXPORTS = {
    "CheckpointError": LEARNED, "load_lopt": LEARNED, "read_header": LEARNED, "save_lopt": "antireg.lopt.io",
    "Arch": LEARNED, "LearnedOptimizer": LEARNED, "LOptNet": LEARNED,
    "MetaSettings": "antireg.lopt.meta", "meta_train": "antireg.lopt.meta", "unroll": "antireg.lopt.meta",
    "MetaObjective": "antireg.lopt.objectives", "Task": "antireg.lopt.tasks", "TaskSpec": "antireg.lopt.tasks",
    "build_task": "antireg.lopt.tasks", "quadratic_task": "antireg.lopt.tasks",
}  # fmt: skip


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'antireg.lopt' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "Arch", "CheckpointError", "LOptNet", "LearnedOptimizer", "MetaObjective", "MetaSettings", "Task", "TaskSpec",
    "build_task", "load_lopt", "meta_train", "quadratic_task", "read_header", "save_lopt", "unroll",
]  # fmt: skip
