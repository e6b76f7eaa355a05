"""A model of Supavisor, Supabase's pooler, as its source says it behaves towards a client (docs/supavisor-model.md).

Supavisor itself cannot run here (no image, no Hex packages); the compose profile `supavisor` runs the real
image for users who can pull it. The model is what every row through it says: "model of Supavisor <line>".

- the release lines (2.8, 2.9, 2.10 provisional) and what differs between them: lab.topology.supavisor_releases,
  which the service kind that describes the model reads too
- errors.py    Supavisor's own errors: code, SQLSTATE, text per line, wire framing
- scram.py     SCRAM with the roles' secrets on both sides (pass-through)
- prepared.py  named prepared statements with the switch on: translation, storage, replay
- sql.py       what Supavisor reads in SQL (the simple-query refusal, session leaks)
- model.py     the pooler: tenants, authentication, pools, transaction and session mode
- __main__.py  `python -m lab.proxies.supavisor`: the model as a service of the topology
"""
