"""Shared test settings.

Property tests (hypothesis) run *derandomized* by default, so that a regression run on a clean
checkout draws the same examples every time and a red CI is a real regression, not a new draw.
To explore fresh random examples (and do so before a release), run with
``HYPOTHESIS_PROFILE=explore ./dev test tests/test_cli_properties.py`` — a failure there prints a
``@reproduce_failure`` blob; fix the bug and keep the case as a plain test.
"""
import os

from hypothesis import settings

settings.register_profile("regression", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "regression"))
