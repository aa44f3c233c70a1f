"""Shared pytest configuration."""

import os

from hypothesis import settings

# Property-based tests run derandomized by default, so CI generates the same inputs,
# and the same number of them, on every run. HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
