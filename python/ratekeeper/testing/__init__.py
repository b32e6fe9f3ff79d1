"""Test helpers for code that uses ratekeeper (the pytest plugin lives in ``plugin``)."""
