"""Shared pytest configuration: the fake workspace and fake provider fixtures."""

pytest_plugins = ["llmops_nb.testing.pytest_plugin"]
