-- Schema and roles of the lab (a template: lab.config fills its placeholders per run).
-- The application logs in as a plain role, not a superuser: superusers are exempt
-- from part of max_connections, and Supabase applications are not superusers either.
CREATE ROLE ${APP_USER} LOGIN PASSWORD '${APP_PASSWORD}';
GRANT CREATE, USAGE ON SCHEMA public TO ${APP_USER};

CREATE TABLE lab_items (
    id         bigserial PRIMARY KEY,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE lab_items OWNER TO ${APP_USER};
