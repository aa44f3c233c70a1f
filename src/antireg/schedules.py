"""Schedules for the signed regularization coefficient λ(n): their home is :mod:`antireg.lam`,
which resolves a run's λ (sign, unit, schedule, clamp, α = n·λ); the public names stay here."""

from antireg.lam import Schedule, baseline_kappa, constant, dof_target, power_law, zero

__all__ = ["Schedule", "baseline_kappa", "constant", "dof_target", "power_law", "zero"]
