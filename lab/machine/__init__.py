"""What the lab needs from the machine it runs on: Debian packages (apt), servers built from verified source
tarballs, client runtimes with their own dependency locks, and the Docker engine and images. Below the topology:
nothing here knows a topology, a client or a report."""
