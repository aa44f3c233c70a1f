"""Learned optimizers that learn to regularize (Sahoo & Krishnan 2025, arXiv:2510.08968).

>>> net = load_lopt("lopt/lopt_sam.pt")
>>> opt = LearnedOptimizer(model.parameters(), net)     # a torch.optim.Optimizer

- :mod:`.optimizer`: the coordinate-wise learned optimizer (LSTM or MLP), :class:`LearnedOptimizer`;
- :mod:`.tasks`: optimizee tasks (MLP, MLP-ReLU, CNN on digits / MNIST t10k; quadratics);
- :mod:`.objectives`: plain and regularized (SAM, GSAM, GAM, any gradient rule) meta-objectives;
- :mod:`.meta`: meta-training by truncated backpropagation through unrolls;
- :mod:`.probes`: sharpness probes; :mod:`.evaluate`: comparison with SGD, Adam, SAM;
- :mod:`.io`: checkpoints that cannot execute code; :mod:`.config`, :mod:`.cli`: ``antireg lopt``.
"""

# Submodules load on first use, so `antireg --help` does not import torch.
_EXPORTS = {
    "CheckpointError": "io", "load_lopt": "io", "read_header": "io", "save_lopt": "io",
    "MetaSettings": "meta", "meta_train": "meta", "unroll": "meta", "MetaObjective": "objectives",
    "Arch": "optimizer", "LearnedOptimizer": "optimizer", "LOptNet": "optimizer",
    "max_loss_in_ball": "probes", "sharpness_probes": "probes",
    "Task": "tasks", "TaskSpec": "tasks", "build_task": "tasks", "quadratic_task": "tasks",
}  # fmt: skip


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'antireg.lopt' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"antireg.lopt.{_EXPORTS[name]}"), name)


__all__ = [
    "Arch", "CheckpointError", "LOptNet", "LearnedOptimizer", "MetaObjective", "MetaSettings", "Task", "TaskSpec",
    "build_task", "load_lopt", "max_loss_in_ball", "meta_train", "quadratic_task", "read_header", "save_lopt",
    "sharpness_probes", "unroll",
]  # fmt: skip
