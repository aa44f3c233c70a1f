"""antireg: Anti-Regularization and its relatives for the small-sample regime.

Kim, Jeong, Oh (2025), *Convergence and Generalization of Anti-Regularization for
Parametric Models*, arXiv:2508.17412.
"""

from antireg import schedules
from antireg.penalty import ProximityPenalty
from antireg.safeguards import GradClip, TrustRegion, spectral_clamp
from antireg.step import StepInfo, TrainStep

__version__ = "0.1.0"


def __getattr__(name: str):
    # scikit-learn is imported on first use of the estimators, not by every sweep worker
    if name in ("ARRidge", "ARRidgeCV"):
        from antireg import linear

        return getattr(linear, name)
    raise AttributeError(f"module 'antireg' has no attribute {name!r}")

__all__ = [
    "ARRidge", "ARRidgeCV", "GradClip", "ProximityPenalty", "StepInfo", "TrainStep", "TrustRegion",
    "schedules", "spectral_clamp",
]  # fmt: skip
