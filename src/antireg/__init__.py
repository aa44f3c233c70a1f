"""antireg: Anti-Regularization and its relatives for the small-sample regime."""

__version__ = "0.1.0"
