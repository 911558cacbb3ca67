-- A small application database, as the examples meet it: tables (one whose
-- name needs quoting, one in a mixed-case schema), the sequences behind them,
-- a free-standing sequence and a view. Owned by whoever loads it (postgres).
CREATE TABLE customers (
    id   bigserial PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE "Order Items" (
    id          int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    qty         int NOT NULL
);

CREATE SCHEMA "Billing";

CREATE SEQUENCE "Billing".invoice_numbers START 1000;

CREATE TABLE "Billing".invoices (
    number      bigint PRIMARY KEY DEFAULT nextval('"Billing".invoice_numbers'),
    customer_id bigint NOT NULL REFERENCES customers,
    total       numeric(10, 2) NOT NULL
);

CREATE VIEW big_orders AS
    SELECT * FROM "Order Items" WHERE qty >= 5;
