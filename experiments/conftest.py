"""The experiments' options, fixtures and cells come from the lab's pytest plugin (lab/pytest_plugin.py)."""

pytest_plugins = ("lab.pytest_plugin",)
