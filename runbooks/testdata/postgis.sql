-- A PostGIS database: the extension (in public, as CREATE EXTENSION postgis
-- puts it) with its composite types (geometry_dump, valid_detail: extension
-- members recorded on the type, not the relation), its config table
-- spatial_ref_sys with one row of the application's, and tables of geometry
-- and geography owned by a non-superuser owner of the database (u_heroku), as
-- on Heroku. Loaded as a superuser; used by runbooks/heroku_test.go.
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'u_heroku') THEN
    CREATE ROLE u_heroku LOGIN;
  END IF;
  EXECUTE format('ALTER DATABASE %I OWNER TO u_heroku', current_database());
END$$;
-- PostGIS refuses to install while pgaudit logs everything (the target's
-- restore runs with pgaudit.log = none).
SET pgaudit.log = 'none';
CREATE EXTENSION postgis;
INSERT INTO public.spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text)
  VALUES (990001, 'runbook', 990001, '', '+proj=longlat +datum=WGS84 +no_defs');

SET ROLE u_heroku;
CREATE TABLE public.places (id serial PRIMARY KEY, name text NOT NULL, geom geometry(Point, 4326) NOT NULL);
CREATE INDEX places_geom ON public.places USING gist (geom);
CREATE TABLE public.areas (id integer PRIMARY KEY, name text, shape geography(Polygon, 4326));
CREATE VIEW public.places_geojson AS SELECT id, name, ST_AsGeoJSON(geom) AS geojson FROM public.places;
CREATE FUNCTION public.nearest(p geometry) RETURNS integer LANGUAGE sql STABLE
  AS $$ SELECT id FROM public.places ORDER BY geom <-> p LIMIT 1 $$;
INSERT INTO public.places (name, geom)
  SELECT 'place ' || g, ST_SetSRID(ST_MakePoint(-122 + g * 0.01, 37 + g * 0.005), 4326) FROM generate_series(1, 80) g;
INSERT INTO public.areas
  SELECT g, 'area ' || g, ST_GeogFromText(format('POLYGON((%s 1, %s 1, %s 2, %s 2, %s 1))', g, g + 1, g + 1, g, g))
  FROM generate_series(1, 10) g;
RESET ROLE;
