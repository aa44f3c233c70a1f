"""Moved to :mod:`antireg.optimizers.learned` (below the sweep, which trains with it); re-exported here."""

from antireg.optimizers.learned import BETAS, EPS, N_FEATURES, Arch, LearnedOptimizer, LOptNet, State, features  # noqa: F401
