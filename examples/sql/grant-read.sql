-- Read access for the application role on everything that exists now and later.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO application;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO application;
