"""The Supavisor release lines the model follows, and what differs between them, each difference cited.

Supavisor's source (github.com/supabase/supavisor) as the lab read it: tags v2.8.0-v2.8.8 and
v2.9.0-v2.9.10, and `main` at 03e5cc56 (2026-08-20). No v2.10 tag exists in that source; "2.10" here is
`main` plus two later pull requests whose text the lab read but whose merge it could not see: #1185
(replay Parse before a named statement Describe, fixes #1174) and #1113 (txn_mode_leak_action). The
model labels that line "2.10 (provisional)" wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

REPOSITORY = "https://github.com/supabase/supavisor"


@dataclass(frozen=True)
class Release:
    name: str  # "2.8" | "2.9" | "2.10"
    follows: str  # the tag or commit whose code the model follows
    #: errors as v2.9+ encode them (Supavisor.Error: "(CODE) message", fields C, M, S sorted, no V) or as v2.8 did
    #: (Server.error_message: S, V, C, M, no code prefix): lib/supavisor/protocol/server.ex:138-151
    coded_errors: bool
    #: tenant-not-found and wrong-password refusals are held back 500 ms from v2.9.3 (commit 1718c34d, PR #934):
    #: lib/supavisor/client_handler/error.ex:11-15,41-43 @ v2.9.10
    refusal_delay_s: float
    #: a named-statement Describe replays the statement's Parse where the server connection lacks it: PR #1185
    #: (issue #1174); before it the Describe is forwarded as is and the server answers 26000
    describe_replays_parse: bool
    #: the server connection goes back to the pool only when every ReadyForQuery the client's Q/S/F asked for has
    #: arrived (main d366ef00, #1079); before, as soon as one read from the server ends with ReadyForQuery 'I'
    #: (db_handler.ex:328 @ v2.8.8, :410-417 @ v2.9.10)
    counts_ready_for_query: bool
    #: txn_mode_leak_action (ignore | log | error) exists: PR #1113
    has_leak_action: bool
    #: session mode: an idle client's server connection gets DISCARD ALL and goes back to the pool (ebc789b3, #837,
    #: from v2.9.0); v2.8 closes it (db_handler.ex:411-421 @ v2.8.8)
    session_discard_all: bool
    #: v2.8's simple-query refusal is followed by ReadyForQuery 'I' before the close (client_handler.ex:756-766
    #: @ v2.8.8); v2.9 sends none for a FATAL (client_handler/error.ex:79-81 @ v2.9.10)
    ready_after_simple_query_refusal: bool

    @property
    def label(self) -> str:
        return f"model of Supavisor {self.name}" + (
            " (provisional: main + PRs #1185, #1113)" if self.name == "2.10" else ""
        )


RELEASES = {
    r.name: r
    for r in (
        Release("2.8", "v2.8.8", False, 0.0, False, False, False, False, True),
        Release("2.9", "v2.9.10", True, 0.5, False, False, False, True, False),
        Release("2.10", "main@03e5cc56 + #1185 + #1113", True, 0.5, True, True, True, True, False),
    )
}
DEFAULT = "2.9"
