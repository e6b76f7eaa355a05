"""The Python client configurations, run in the lab's own process: one module per driver family, each defining its
configurations as `Client` subclasses (lab.clients.python.base). lab.clients.registry finds every module here."""
