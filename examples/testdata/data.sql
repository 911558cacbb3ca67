-- Rows for schema.sql; every sequence is used, so each has a last_value.
INSERT INTO customers (name)
    SELECT 'customer ' || i FROM generate_series(1, 30) i;

INSERT INTO "Order Items" (customer_id, qty)
    SELECT 1 + i % 30, i % 10 FROM generate_series(1, 200) i;

INSERT INTO "Billing".invoices (customer_id, total)
    SELECT 1 + i % 30, i * 12.5 FROM generate_series(1, 40) i;
