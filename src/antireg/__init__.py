"""antireg: Anti-Regularization and its relatives for the small-sample regime.

Kim, Jeong, Oh (2025), *Convergence and Generalization of Anti-Regularization for
Parametric Models*, arXiv:2508.17412.
"""

__version__ = "0.1.0"

# Everything loads on first use: `from antireg import ARRidge` does not import torch,
# and a sweep worker does not import scikit-learn.
_EXPORTS = {
    "ARRidge": "linear", "ARRidgeCV": "linear", "ProximityPenalty": "penalty", "GradClip": "safeguards",
    "TrustRegion": "safeguards", "spectral_clamp": "safeguards", "StepInfo": "step", "TrainStep": "step",
}  # fmt: skip


def __getattr__(name: str):
    import importlib

    if name == "schedules":
        return importlib.import_module("antireg.schedules")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'antireg' has no attribute {name!r}")
    return getattr(importlib.import_module(f"antireg.{_EXPORTS[name]}"), name)

__all__ = [
    "ARRidge", "ARRidgeCV", "GradClip", "ProximityPenalty", "StepInfo", "TrainStep", "TrustRegion",
    "schedules", "spectral_clamp",
]  # fmt: skip
