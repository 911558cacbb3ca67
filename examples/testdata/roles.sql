-- The roles the examples hand objects to: application (the default app_role)
-- and the two customers' roles of examples/vars/. Roles are cluster-wide, so
-- this is idempotent.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['application', 'acme_app', 'globex'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;
