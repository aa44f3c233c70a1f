"""AR's safeguard defaults (SPEC §1: on unless switched off), one home for the sweep
config and :class:`antireg.optim.AntiReg`. Torch-free, so the config loads without it.
The spectral margin η lives with the spectra: :data:`antireg.spectral.ETA`."""

GRAD_CLIP = 10.0  # G: the global gradient norm is clipped to it
TRUST_FACTOR = 2.0  # R = factor · ‖θ₀‖ for the trust region around θ₀
CENTER = "zero"  # θ_c = 0; "init" (θ_c = θ₀) makes the NTK analysis exact

__all__ = ["CENTER", "GRAD_CLIP", "TRUST_FACTOR"]
