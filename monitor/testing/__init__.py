"""Test helpers for users of misinfo-monitor: the pytest plugin (`monitor.testing.plugin`)."""
