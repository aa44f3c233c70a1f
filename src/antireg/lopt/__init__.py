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

from antireg.lopt.io import CheckpointError, load_lopt, read_header, save_lopt
from antireg.lopt.meta import MetaSettings, meta_train, unroll
from antireg.lopt.objectives import MetaObjective
from antireg.lopt.optimizer import Arch, LearnedOptimizer, LOptNet
from antireg.lopt.probes import max_loss_in_ball, sharpness_probes
from antireg.lopt.tasks import Task, TaskSpec, build_task, quadratic_task

__all__ = [
    "Arch", "CheckpointError", "LOptNet", "LearnedOptimizer", "MetaObjective", "MetaSettings", "Task", "TaskSpec",
    "build_task", "load_lopt", "max_loss_in_ball", "meta_train", "quadratic_task", "read_header", "save_lopt",
    "sharpness_probes", "unroll",
]  # fmt: skip
