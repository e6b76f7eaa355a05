-- Schema and roles of the lab (a template: lab.config fills its placeholders per run).
-- The roles Supabase uses for its REST tier: PostgREST logs in as authenticator
-- (NOINHERIT: it has no rights of its own) and switches to the JWT's role.
CREATE ROLE anon NOLOGIN;
CREATE ROLE service_role NOLOGIN BYPASSRLS;
CREATE ROLE ${AUTHENTICATOR_USER} LOGIN NOINHERIT PASSWORD '${AUTHENTICATOR_PASSWORD}';
GRANT anon, service_role TO ${AUTHENTICATOR_USER};
GRANT USAGE ON SCHEMA public TO anon, service_role;

-- Passwords are given as the run's SCRAM secrets (the same password, stored with the salt the lab chose): the
-- poolers' auth_file holds the very same secrets, so PgBouncer can log in to this server with a client's proof.
ALTER ROLE ${SUPERUSER} PASSWORD '${SUPERUSER_SCRAM}';

-- The application logs in as a plain role, not a superuser: superusers are exempt
-- from part of max_connections, and Supabase applications are not superusers either.
CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_SCRAM}';
GRANT CREATE, USAGE ON SCHEMA public TO ${APP_USER};
-- The same rights, and jit = off as a role setting: what the RCA asked of a startup parameter, set where no
-- pooler has to pass it on (the rca-attempt-*-alter-role configurations log in as it).
CREATE ROLE ${JIT_OFF_USER} LOGIN PASSWORD '${JIT_OFF_SCRAM}' IN ROLE ${APP_USER};
ALTER ROLE ${JIT_OFF_USER} SET jit = off;
-- as Supabase's own user may: a schema of its own (what a run against a target creates, and drops)
GRANT CREATE ON DATABASE postgres TO ${APP_USER};

CREATE TABLE lab_items (
    id         bigserial PRIMARY KEY,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- who inserted, as the server saw it: the REST tier must have switched to the
    -- JWT's role and published its claims (PostgREST's per-request settings)
    inserted_by text NOT NULL DEFAULT current_user,
    jwt_role   text DEFAULT (current_setting('request.jwt.claims', true)::json ->> 'role')
);
ALTER TABLE lab_items OWNER TO ${APP_USER};
-- REST clients write the payload only: the audit columns are the server's to fill
-- (column privileges, so PostgREST and the stand-in refuse them alike: 42501)
GRANT SELECT, INSERT (payload) ON lab_items TO anon, service_role;
GRANT USAGE ON SEQUENCE lab_items_id_seq TO anon, service_role;

-- Supavisor (compose profile "supavisor") keeps its tenants in this schema of the server
-- (its own dev setup creates it the same way); empty and unused otherwise.
CREATE SCHEMA IF NOT EXISTS _supavisor;
