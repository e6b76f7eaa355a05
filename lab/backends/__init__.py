"""Ways of starting the topology described in compose/: native processes (and Docker, later)."""
