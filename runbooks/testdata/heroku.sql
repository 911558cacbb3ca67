-- A source database shaped like a real Heroku Postgres database rather than a
-- sample schema. Loaded as a superuser, it first does what Heroku's platform
-- does: a non-superuser role (u_heroku) owns the database and is what
-- DATABASE_URL connects as; extensions live in the heroku_ext schema and the
-- database's search_path includes it (ALTER DATABASE … SET); an event trigger
-- logs DDL into a table of the application (an audit pattern that needs a
-- superuser to set up). Then, as u_heroku, the application's objects: non-ASCII
-- names, a generated column, a partitioned table, an unlogged table, large
-- objects, a table with FORCE ROW LEVEL SECURITY, a function that calls an
-- extension's function unqualified (it needs the database's search_path), and
-- a collation, conversion, operator, text search objects, extended statistics
-- and a publication.
--
-- Used by runbooks/heroku_test.go. The role u_heroku is cluster-wide: created
-- when missing. The FORCE ROW LEVEL SECURITY table makes the migration's
-- preflight stop unless lift_force_rls is true.

-- ------------------------------------------------------------ Heroku's part
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'u_heroku') THEN
    CREATE ROLE u_heroku LOGIN;
  END IF;
  EXECUTE format('ALTER DATABASE %I OWNER TO u_heroku', current_database());
  EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, heroku_ext', current_database());
  -- Settings that change how values print: verify-data must not depend on them.
  EXECUTE format('ALTER DATABASE %I SET DateStyle = ''SQL, DMY''', current_database());
  EXECUTE format('ALTER DATABASE %I SET extra_float_digits = 0', current_database());
  EXECUTE format('ALTER DATABASE %I SET "app.tenant_mode" = ''strict, audited''', current_database());
  -- A role setting in this database: not carried (the role is not on the target).
  EXECUTE format('ALTER ROLE u_heroku IN DATABASE %I SET work_mem = ''16MB''', current_database());
END$$;

CREATE SCHEMA heroku_ext;
GRANT USAGE ON SCHEMA heroku_ext TO u_heroku;
CREATE EXTENSION citext WITH SCHEMA heroku_ext;
CREATE EXTENSION hstore WITH SCHEMA heroku_ext;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA heroku_ext;

-- The audit log of DDL, owned by the application; its event trigger is made
-- at the end, after the application's schema, as a customer adds it later.
CREATE TABLE public.ddl_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  tag text NOT NULL,
  object text
);
ALTER TABLE public.ddl_log OWNER TO u_heroku;
CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    INSERT INTO public.ddl_log (tag, object) VALUES (r.command_tag, r.object_identity);
  END LOOP;
END $$;
ALTER FUNCTION public.log_ddl() OWNER TO u_heroku;

-- --------------------------------------------------------- the application
SET ROLE u_heroku;
SET search_path = "$user", public, heroku_ext;

CREATE SCHEMA "facturación";

CREATE TABLE "facturación".clientes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  "correo electrónico" citext NOT NULL UNIQUE,
  atributos hstore,
  token uuid NOT NULL DEFAULT uuid_generate_v4(),
  "año" integer
);

CREATE TABLE "facturación"."líneas" (
  id bigserial PRIMARY KEY,
  cliente bigint NOT NULL REFERENCES "facturación".clientes (id),
  cantidad integer NOT NULL,
  "precio_céntimos" bigint NOT NULL,
  total_céntimos bigint GENERATED ALWAYS AS (cantidad * "precio_céntimos") STORED
);

-- Values whose text depends on session settings (DateStyle, extra_float_digits,
-- TimeZone, IntervalStyle, bytea_output, lc_monetary).
CREATE TABLE public.measurements (
  id integer PRIMARY KEY,
  reading double precision,
  ratio real,
  at timestamptz,
  day date,
  span interval,
  price money,
  raw bytea
);

CREATE TABLE public.events (at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE public."événements_2024" PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');

CREATE UNLOGGED TABLE public.sessions (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), data hstore);

CREATE TABLE public.documents (id serial PRIMARY KEY, title text NOT NULL, content oid NOT NULL);

-- Each tenant sees its own notes, the owner included (FORCE): a Heroku
-- DATABASE_URL, which connects as the owner, cannot dump it in full.
CREATE TABLE public.tenant_notes (id serial PRIMARY KEY, tenant text NOT NULL, note text);

CREATE SEQUENCE public.invoice_numbers START 5000;

CREATE VIEW "facturación".resumen AS
  SELECT c.id, c."correo electrónico", sum(l.total_céntimos) AS total
  FROM "facturación".clientes c LEFT JOIN "facturación"."líneas" l ON l.cliente = c.id GROUP BY c.id;

-- Calls an extension's function unqualified: works only with heroku_ext in
-- the search_path, which the database's setting provides.
CREATE FUNCTION public.new_token() RETURNS text LANGUAGE sql AS $$ SELECT uuid_generate_v4()::text $$;

INSERT INTO "facturación".clientes ("correo electrónico", atributos, "año")
  SELECT 'Cliente' || g || '@Example.com', hstore('plan', CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'básico' END), 2000 + g % 25
  FROM generate_series(1, 50) g;
INSERT INTO "facturación"."líneas" (cliente, cantidad, "precio_céntimos")
  SELECT 1 + g % 50, 1 + g % 4, 199 * g FROM generate_series(1, 200) g;
INSERT INTO public.measurements
  SELECT g, g / 3.0, g / 7.0, TIMESTAMPTZ '2024-03-01 12:00:00+01' + g * INTERVAL '1 day 3 hours',
         DATE '2024-01-31' + g, make_interval(days => g, secs => g * 1.5), (g * 1.25)::numeric::money,
         decode(md5(g::text), 'hex')
  FROM generate_series(1, 60) g;
INSERT INTO public.events SELECT DATE '2024-11-01' + g * 2, 'évènement ' || g FROM generate_series(1, 100) g;
INSERT INTO public.sessions (data) SELECT hstore('n', g::text) FROM generate_series(1, 15) g;
-- 25 large objects, owned by u_heroku.
INSERT INTO public.documents (title, content)
  SELECT 'document ' || g, lo_from_bytea(0, convert_to(repeat('page ' || g || E'\n', g * 10), 'UTF8'))
  FROM generate_series(1, 25) g;
INSERT INTO public.tenant_notes (tenant, note)
  SELECT CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 'note ' || g FROM generate_series(1, 12) g;
ALTER TABLE public.tenant_notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tenant_notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.tenant_notes USING (tenant = current_setting('app.tenant', true));
SELECT setval('public.invoice_numbers', 5041);

-- Objects of other kinds the application owns on Heroku and must own on the
-- target: a collation, a conversion, an operator, text search objects,
-- extended statistics, a publication.
CREATE COLLATION public.c_copy FROM "C";
CREATE CONVERSION public.latin1_to_utf8 FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;
CREATE OPERATOR public.=== (LEFTARG = integer, RIGHTARG = integer, FUNCTION = int4eq);
CREATE TEXT SEARCH DICTIONARY public.simple_dict (TEMPLATE = pg_catalog.simple);
CREATE TEXT SEARCH CONFIGURATION public.sencillo (COPY = pg_catalog.simple);
CREATE STATISTICS "facturación".líneas_stats ON cantidad, "precio_céntimos" FROM "facturación"."líneas";
CREATE PUBLICATION documents_pub FOR TABLE public.documents;

-- ------------------------------------------- the event trigger, then 3 DDL
RESET ROLE;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION public.log_ddl();
SET ROLE u_heroku;
CREATE INDEX clientes_año ON "facturación".clientes ("año");
ALTER TABLE public.documents ADD COLUMN pages integer;
COMMENT ON TABLE public.documents IS 'Scanned documents (large objects)';
RESET ROLE;
