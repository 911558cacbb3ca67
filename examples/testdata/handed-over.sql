-- A target after the hand-over: every table belongs to the application role
-- (what examples/generate.yaml does), as examples/assert.yaml expects.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT schemaname, tablename FROM pg_tables
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') LOOP
        EXECUTE format('ALTER TABLE %I.%I OWNER TO application', t.schemaname, t.tablename);
    END LOOP;
END
$$;
