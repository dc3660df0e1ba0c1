-- Oracle bootstrap for mozart_luigi's docker-compose stack (tenant "initech").
--
-- gvenzl/oracle-free runs this once, at the first start, with
-- `sqlplus / as sysdba` in the CDB root; the sample shop goes into the PDB.
-- The schema owner INITECH has no password (schema-only account); tenants read
-- it as INITECH_READER (dev default password, INITECH_DB_PASSWORD in compose).
-- There is no native Oracle in scripts/stack: this file is used by compose only.
WHENEVER SQLERROR EXIT SQL.SQLCODE
ALTER SESSION SET CONTAINER = FREEPDB1;
ALTER SESSION SET TIME_ZONE = '+00:00';

CREATE USER initech NO AUTHENTICATION DEFAULT TABLESPACE users QUOTA UNLIMITED ON users;
CREATE USER initech_reader IDENTIFIED BY "initech-dev-password";
GRANT CREATE SESSION TO initech_reader;

CREATE TABLE initech.customers (
  customer_id NUMBER(10) PRIMARY KEY,
  email       VARCHAR2(255) NOT NULL,
  full_name   VARCHAR2(200) NOT NULL,
  country     CHAR(2) NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL,
  updated_at  TIMESTAMP(6) NOT NULL
);

CREATE TABLE initech.products (
  product_id  NUMBER(10) PRIMARY KEY,
  sku         VARCHAR2(32) NOT NULL UNIQUE,
  name        VARCHAR2(200) NOT NULL,
  category    VARCHAR2(64) NOT NULL,
  unit_price  NUMBER(12, 2) NOT NULL,
  updated_at  TIMESTAMP(6) NOT NULL
);

CREATE TABLE initech.orders (
  order_id    NUMBER(10) PRIMARY KEY,
  customer_id NUMBER(10) NOT NULL REFERENCES initech.customers (customer_id),
  status      VARCHAR2(16) NOT NULL
              CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
  ordered_at  TIMESTAMP(6) NOT NULL,
  updated_at  TIMESTAMP(6) NOT NULL
);

CREATE TABLE initech.order_items (
  order_item_id NUMBER(10) PRIMARY KEY,
  order_id      NUMBER(10) NOT NULL REFERENCES initech.orders (order_id),
  product_id    NUMBER(10) NOT NULL REFERENCES initech.products (product_id),
  quantity      NUMBER(10) NOT NULL CHECK (quantity > 0),
  unit_price    NUMBER(12, 2) NOT NULL,
  updated_at    TIMESTAMP(6) NOT NULL
);

-- Sizes: 40 customers, 15 products, 200 orders, 1..3 items per order.
-- All updated_at values fall on 2026-11-25 .. 2026-11-28 (UTC, microseconds).
INSERT INTO initech.customers
SELECT LEVEL,
       'customer' || LEVEL || '@initech.example',
       DECODE(MOD(LEVEL, 5), 0, 'Peter', 1, 'Milton', 2, 'Samir', 3, 'Joanna', 'Michael')
         || ' '
         || DECODE(MOD(LEVEL, 4), 0, 'Gibbons', 1, 'Waddams', 2, 'Nagheenanajar', 'Bolton'),
       DECODE(MOD(LEVEL, 3), 0, 'US', 1, 'IN', 'IE'),
       TIMESTAMP '2026-03-01 00:00:00' + NUMTODSINTERVAL(LEVEL * 4, 'DAY')
         + NUMTODSINTERVAL(MOD(LEVEL * 7919, 86400), 'SECOND'),
       TIMESTAMP '2026-11-25 00:00:00' + NUMTODSINTERVAL(MOD(LEVEL, 4), 'DAY')
         + NUMTODSINTERVAL(MOD(LEVEL * 7919, 86400), 'SECOND')
         + NUMTODSINTERVAL(MOD(LEVEL * 104729, 1000000) / 1000000, 'SECOND')
FROM dual CONNECT BY LEVEL <= 40;

INSERT INTO initech.products
SELECT LEVEL,
       'INI-' || LPAD(LEVEL, 4, '0'),
       DECODE(MOD(LEVEL, 3), 0, 'TPS report cover', 1, 'Red stapler', 'Printer') || ' v' || LEVEL,
       DECODE(MOD(LEVEL, 2), 0, 'office', 'hardware'),
       ROUND(2.99 + MOD(LEVEL * 41, 150) + MOD(LEVEL, 100) / 100, 2),
       TIMESTAMP '2026-11-25 00:00:00' + NUMTODSINTERVAL(MOD(LEVEL + 3, 4), 'DAY')
         + NUMTODSINTERVAL(MOD(LEVEL * 3571, 86400), 'SECOND')
         + NUMTODSINTERVAL(MOD(LEVEL * 7907, 1000000) / 1000000, 'SECOND')
FROM dual CONNECT BY LEVEL <= 15;

-- Orders placed on day d = i mod 4; shipped/delivered orders placed before the
-- last day get their update k = 1..(3 - d) days later, the others k = 0.
INSERT INTO initech.orders
SELECT i,
       1 + MOD(i * 11, 40),
       status,
       ordered_at,
       CASE WHEN status IN ('shipped', 'delivered') AND d < 3
            THEN CAST(TRUNC(ordered_at) AS TIMESTAMP(6))
                 + NUMTODSINTERVAL(1 + MOD(i, 3 - d), 'DAY')
                 + NUMTODSINTERVAL(MOD(i * 911, 86400), 'SECOND')
            ELSE ordered_at
       END
FROM (
  SELECT LEVEL AS i,
         MOD(LEVEL, 4) AS d,
         DECODE(MOD(LEVEL, 5), 0, 'cancelled', 1, 'placed', 2, 'shipped', 'delivered') AS status,
         TIMESTAMP '2026-11-25 00:00:00' + NUMTODSINTERVAL(MOD(LEVEL, 4), 'DAY')
           + NUMTODSINTERVAL(MOD(LEVEL * 3607, 86400), 'SECOND')
           + NUMTODSINTERVAL(MOD(LEVEL * 104723, 1000000) / 1000000, 'SECOND') AS ordered_at
  FROM dual CONNECT BY LEVEL <= 200
);

INSERT INTO initech.order_items
SELECT (o.order_id - 1) * 3 + k.n,
       o.order_id,
       p.product_id,
       1 + MOD(o.order_id + k.n, 4),
       p.unit_price,
       o.ordered_at
FROM initech.orders o
JOIN (SELECT LEVEL AS n FROM dual CONNECT BY LEVEL <= 3) k ON k.n <= 1 + MOD(o.order_id, 3)
JOIN initech.products p ON p.product_id = 1 + MOD(o.order_id * 7 + k.n * 5, 15);

COMMIT;

GRANT SELECT ON initech.customers TO initech_reader;
GRANT SELECT ON initech.products TO initech_reader;
GRANT SELECT ON initech.orders TO initech_reader;
GRANT SELECT ON initech.order_items TO initech_reader;
