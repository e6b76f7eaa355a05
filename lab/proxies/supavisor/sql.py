"""What Supavisor reads in a query's SQL: the kind of each top-level statement.

Supavisor parses SQL with pg_query (a Rust NIF over PostgreSQL's own parser, native/pgparser @ v2.9.10).
The model has no PostgreSQL parser, so it reads the same facts from the statement's tokens: it splits
the text into top-level statements (outside quotes, dollar quotes and comments) and reads each one's
leading keywords. That is what pg_query's statement types amount to for the checks Supavisor makes:

- simple_query_handler.ex:13-46 @ v2.8.8: any PrepareStmt, ExecuteStmt or DeallocateStmt at top level
  refuses the query (EXPLAIN EXECUTE and CREATE TABLE AS EXECUTE are other statements, and pass);
- PR #1113's session_leak walk (native/pgparser/src/lib.rs): the first statement that leaves state on
  the server connection: a session SET (not LOCAL, not TRANSACTION [SNAPSHOT]), set_config(..., false),
  DISCARD, a session advisory-lock function, LISTEN or UNLISTEN, DECLARE ... WITH HOLD, CREATE TEMP
  TABLE (unless ON COMMIT DROP), SET CONSTRAINTS, LOAD.

Unparseable SQL passes in Supavisor; here, text the tokenizer cannot place passes too.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*")


def statements(sql: str) -> list[str]:
    """The top-level statements of a query string, without comments; quoted text kept as it is."""
    out: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            current.append(" ")
            continue
        if ch == "/" and sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            current.append(" ")
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:
                        end += 2
                        continue
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
            continue
        if ch == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$", sql[i:])
            if m:
                tag = m.group(0)
                end = sql.find(tag, i + len(tag))
                end = n if end < 0 else end + len(tag)
                current.append(sql[i:end])
                i = end
                continue
        if ch == ";":
            text = "".join(current).strip()
            if text:
                out.append(text)
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    text = "".join(current).strip()
    if text:
        out.append(text)
    return out


def _words(statement: str) -> list[str]:
    """The statement's words outside quoted text, upper-cased."""
    bare = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$([A-Za-z_0-9]*)\$.*?\$\1\$", " ", statement, flags=re.S)
    return [w.upper() for w in _WORD.findall(bare)]


def is_prepared_statement_command(statement: str) -> bool:
    """PrepareStmt, ExecuteStmt, DeallocateStmt: PREPARE, EXECUTE, DEALLOCATE [PREPARE] [ALL]."""
    words = _words(statement)
    return bool(words) and words[0] in ("PREPARE", "EXECUTE", "DEALLOCATE")


def refuses_simple_query(sql: str) -> bool:
    """Supavisor's simple-query check: any top-level statement of the query is a prepared-statement command."""
    return any(is_prepared_statement_command(s) for s in statements(sql.rstrip("\0")))


#: PR #1113's SessionLeaks.describe/1, by the NIF's atom
LEAK_DESCRIPTIONS = {
    "session_set": "session-level SET statement",
    "set_config": "session-level set_config() call",
    "discard": "DISCARD statement",
    "advisory_lock": "session-level advisory lock",
    "listen": "LISTEN statement",
    "hold_cursor": "WITH HOLD cursor",
    "temp_table": "temporary table creation",
    "set_constraints": "session-level SET CONSTRAINTS statement",
    "load": "LOAD statement",
}
_ADVISORY = re.compile(
    r"\b(?:pg_catalog\s*\.\s*)?pg_(?:try_)?advisory_(?:lock|lock_shared|unlock|unlock_shared|unlock_all)\s*\(", re.I
)
_SET_CONFIG = re.compile(r"\b(?:pg_catalog\s*\.\s*)?set_config\s*\((.*?)\)", re.I | re.S)
_FALSE = {"false", "'f'", "'false'", "0", "'0'", "off", "'off'", "no", "'no'", "f"}


def session_leak(sql: str) -> str | None:
    """The first statement that leaves session state on the server connection, as PR #1113's NIF names it."""
    for statement in statements(sql.rstrip("\0")):
        words = _words(statement)
        if not words:
            continue
        head = words[0]
        if head == "SET" and len(words) > 1:
            if words[1] == "CONSTRAINTS":
                return "set_constraints"
            if words[1] not in ("LOCAL", "TRANSACTION") and words[1:3] != ["SESSION", "CHARACTERISTICS"]:
                return "session_set"
        if head == "RESET" or head == "DISCARD":
            return "discard" if head == "DISCARD" else "session_set"
        if head in ("LISTEN", "UNLISTEN"):
            return "listen"
        if head == "LOAD":
            return "load"
        if (
            head == "DECLARE"
            and "HOLD" in words
            and "WITHOUT" not in words[words.index("HOLD") - 1 : words.index("HOLD")]
        ):
            return "hold_cursor"
        temporary = head == "CREATE" and len(words) > 2 and words[1] in ("TEMP", "TEMPORARY") and words[2] == "TABLE"
        if temporary and not ("COMMIT" in words and "DROP" in words[words.index("COMMIT") :]):
            return "temp_table"
        if _ADVISORY.search(statement) and not re.search(r"advisory_xact", statement, re.I):
            return "advisory_lock"
        for m in _SET_CONFIG.finditer(statement):
            args = [a.strip() for a in m.group(1).split(",")]
            if len(args) == 3 and args[2].lower() in _FALSE:
                return "set_config"
    return None
