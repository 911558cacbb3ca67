-- One mixed-case schema is enough to break the published procedure: its
-- generated ALTER TABLE leaves the schema name unquoted, so PostgreSQL folds
-- "Sales" to sales.
CREATE SCHEMA "Sales";
CREATE TABLE "Sales".orders (id serial PRIMARY KEY, total numeric NOT NULL);
INSERT INTO "Sales".orders (total) VALUES (1), (2), (3);
