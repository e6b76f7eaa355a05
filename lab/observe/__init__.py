"""What the servers themselves saw during a cell, beside what the client raised: their log lines, the logins they
counted, the prepared statements left on a pooler's server connections; and the housekeeping that gives a cell
fresh server connections."""
