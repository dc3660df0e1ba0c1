-- PostgreSQL bootstrap for mozart_luigi's dev/test stack.
--
-- Run by psql as a superuser connected to any database:
--   * docker-compose mounts it into /docker-entrypoint-initdb.d (first start only);
--   * scripts/stack runs it once after initdb.
-- It is safe to run again: roles/databases are created if missing and the
-- sample shop in database "acme" is rebuilt from scratch (deterministic data).
-- Passwords below are the dev defaults; scripts/stack re-applies
-- MOZART_PG_PASSWORD / ACME_DB_PASSWORD afterwards when they are overridden.
\set ON_ERROR_STOP on

-- ---------------------------------------------------------------- roles
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mozart') THEN
    CREATE ROLE mozart LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD 'mozart-dev';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acme_reader') THEN
    CREATE ROLE acme_reader LOGIN PASSWORD 'acme-dev-password';
  END IF;
END
$$;

-- ------------------------------------------------------------ databases
SELECT 'CREATE DATABASE mozart_test OWNER mozart ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mozart_test') \gexec
SELECT 'CREATE DATABASE acme OWNER mozart ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'acme') \gexec

-- ------------------------------------------------- sample shop: tenant acme
\connect acme
SET ROLE mozart;
SET TIME ZONE 'UTC';

DROP TABLE IF EXISTS order_items, orders, products, customers;

CREATE TABLE customers (
  customer_id integer PRIMARY KEY,
  email       varchar(255) NOT NULL,
  full_name   varchar(200) NOT NULL,
  country     char(2) NOT NULL,
  created_at  timestamp(6) NOT NULL,
  updated_at  timestamp(6) NOT NULL
);

CREATE TABLE products (
  product_id  integer PRIMARY KEY,
  sku         varchar(32) NOT NULL UNIQUE,
  name        varchar(200) NOT NULL,
  category    varchar(64) NOT NULL,
  unit_price  decimal(12, 2) NOT NULL,
  updated_at  timestamp(6) NOT NULL
);

CREATE TABLE orders (
  order_id    integer PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (customer_id),
  status      varchar(16) NOT NULL
              CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
  ordered_at  timestamp(6) NOT NULL,
  updated_at  timestamp(6) NOT NULL
);

CREATE TABLE order_items (
  order_item_id integer PRIMARY KEY,
  order_id      integer NOT NULL REFERENCES orders (order_id),
  product_id    integer NOT NULL REFERENCES products (product_id),
  quantity      integer NOT NULL CHECK (quantity > 0),
  unit_price    decimal(12, 2) NOT NULL,
  updated_at    timestamp(6) NOT NULL
);

-- Sizes: 80 customers, 24 products, 320 orders, 1..3 items per order.
-- All updated_at values fall on 2026-11-25 .. 2026-11-28 (UTC, microseconds).
INSERT INTO customers
SELECT i,
       format('customer%s@acme.example', i),
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken'])[1 + i % 8]
         || ' '
         || (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Thompson', 'Ritchie'])[1 + i % 9],
       (ARRAY['US', 'DE', 'FR', 'GB', 'JP', 'BR'])[1 + i % 6],
       timestamp '2026-01-01' + i * 2 * interval '1 day' + (i * 7919 % 86400) * interval '1 second',
       timestamp '2026-11-25' + (i % 4) * interval '1 day'
         + (i * 7919 % 86400) * interval '1 second'
         + (i * 104729 % 1000000) * interval '1 microsecond'
FROM generate_series(1, 80) AS i;

INSERT INTO products
SELECT i,
       format('ACME-%s', lpad(i::text, 4, '0')),
       (ARRAY['Anvil', 'Rocket', 'Magnet', 'Spring', 'Catapult', 'Glue'])[1 + i % 6] || ' model ' || i,
       (ARRAY['hardware', 'outdoor', 'toys', 'garden'])[1 + i % 4],
       round((4.99 + (i * 37 % 200) + (i % 100) / 100.0)::numeric, 2),
       timestamp '2026-11-25' + ((i + 1) % 4) * interval '1 day'
         + (i * 3571 % 86400) * interval '1 second'
         + (i * 7907 % 1000000) * interval '1 microsecond'
FROM generate_series(1, 24) AS i;

-- Orders placed on day d = i % 4; shipped/delivered orders placed before the
-- last day get their update k = 1..(3 - d) days later, the others k = 0.
INSERT INTO orders
SELECT i,
       1 + (i * 17) % 80,
       status,
       ordered_at,
       CASE WHEN status IN ('shipped', 'delivered') AND d < 3
            THEN date_trunc('day', ordered_at) + (1 + i % (3 - d)) * interval '1 day'
                 + (i * 911 % 86400) * interval '1 second'
            ELSE ordered_at
       END
FROM (
  SELECT i,
         i % 4 AS d,
         CASE i % 7 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'placed' WHEN 2 THEN 'placed'
                    WHEN 3 THEN 'shipped' WHEN 4 THEN 'shipped' ELSE 'delivered' END AS status,
         timestamp '2026-11-25' + (i % 4) * interval '1 day'
           + (i * 3607 % 86400) * interval '1 second'
           + (i * 104723 % 1000000) * interval '1 microsecond' AS ordered_at
  FROM generate_series(1, 320) AS i
) AS o;

INSERT INTO order_items
SELECT (o.order_id - 1) * 3 + k,
       o.order_id,
       p.product_id,
       1 + (o.order_id + k) % 5,
       p.unit_price,
       o.ordered_at
FROM orders AS o
CROSS JOIN LATERAL generate_series(1, 1 + o.order_id % 3) AS k
JOIN products AS p ON p.product_id = 1 + (o.order_id * 7 + k * 5) % 24;

ANALYZE;

-- ------------------------------------------------- read-only tenant access
RESET ROLE;
GRANT CONNECT ON DATABASE acme TO acme_reader;
GRANT USAGE ON SCHEMA public TO acme_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO acme_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE mozart IN SCHEMA public GRANT SELECT ON TABLES TO acme_reader;
