-- MariaDB bootstrap for mozart_luigi's dev/test stack.
--
-- Run by the mariadb client as root:
--   * docker-compose mounts it into /docker-entrypoint-initdb.d (first start only);
--   * scripts/stack runs it once after mariadb-install-db.
-- It is safe to run again: users/databases are created if missing and the
-- sample shop in database "globex" is rebuilt from scratch (deterministic data).
-- Passwords below are the dev defaults; scripts/stack re-applies
-- MOZART_MYSQL_PASSWORD / GLOBEX_DB_PASSWORD afterwards when they are overridden.

SET time_zone = '+00:00';
SET NAMES utf8mb4;

-- ---------------------------------------------------------------- users
CREATE USER IF NOT EXISTS 'mozart'@'%' IDENTIFIED BY 'mozart-dev';
GRANT ALL PRIVILEGES ON *.* TO 'mozart'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'globex_reader'@'%' IDENTIFIED BY 'globex-dev-password';

-- ------------------------------------------------------------ databases
CREATE DATABASE IF NOT EXISTS mozart_test CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS globex CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- ----------------------------------------------- sample shop: tenant globex
USE globex;

DROP TABLE IF EXISTS order_items, orders, products, customers, _seq;

CREATE TABLE customers (
  customer_id INT PRIMARY KEY,
  email       VARCHAR(255) NOT NULL,
  full_name   VARCHAR(200) NOT NULL,
  country     CHAR(2) NOT NULL,
  created_at  DATETIME(6) NOT NULL,
  updated_at  DATETIME(6) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE products (
  product_id  INT PRIMARY KEY,
  sku         VARCHAR(32) NOT NULL UNIQUE,
  name        VARCHAR(200) NOT NULL,
  category    VARCHAR(64) NOT NULL,
  unit_price  DECIMAL(12, 2) NOT NULL,
  updated_at  DATETIME(6) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE orders (
  order_id    INT PRIMARY KEY,
  customer_id INT NOT NULL,
  status      VARCHAR(16) NOT NULL,
  ordered_at  DATETIME(6) NOT NULL,
  updated_at  DATETIME(6) NOT NULL,
  CONSTRAINT orders_status_chk CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
  CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (customer_id)
) ENGINE = InnoDB;

CREATE TABLE order_items (
  order_item_id INT PRIMARY KEY,
  order_id      INT NOT NULL,
  product_id    INT NOT NULL,
  quantity      INT NOT NULL,
  unit_price    DECIMAL(12, 2) NOT NULL,
  updated_at    DATETIME(6) NOT NULL,
  CONSTRAINT order_items_quantity_chk CHECK (quantity > 0),
  CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES orders (order_id),
  CONSTRAINT order_items_product_fk FOREIGN KEY (product_id) REFERENCES products (product_id)
) ENGINE = InnoDB;

-- Integers 1..1000, dropped again at the end.
CREATE TABLE _seq (i INT PRIMARY KEY) ENGINE = InnoDB;
INSERT INTO _seq (i)
WITH RECURSIVE s (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000)
SELECT i FROM s;

-- Sizes: 55 customers, 18 products, 260 orders, 1..3 items per order.
-- All updated_at values fall on 2026-11-25 .. 2026-11-28 (UTC, microseconds).
INSERT INTO customers
SELECT i,
       CONCAT('customer', i, '@globex.example'),
       CONCAT(ELT(1 + i % 8, 'Hank', 'Lisa', 'Bart', 'Marge', 'Nelson', 'Milhouse', 'Edna', 'Seymour'),
              ' ',
              ELT(1 + i % 7, 'Scorpio', 'Simpson', 'Muntz', 'Van Houten', 'Krabappel', 'Skinner', 'Flanders')),
       ELT(1 + i % 5, 'US', 'CA', 'MX', 'NL', 'IT'),
       TIMESTAMP '2026-02-01 00:00:00' + INTERVAL (i * 3) DAY + INTERVAL (i * 7919 % 86400) SECOND,
       TIMESTAMP '2026-11-25 00:00:00' + INTERVAL (i % 4) DAY
         + INTERVAL (i * 7919 % 86400) SECOND
         + INTERVAL (i * 104729 % 1000000) MICROSECOND
FROM _seq WHERE i <= 55;

INSERT INTO products
SELECT i,
       CONCAT('GLX-', LPAD(i, 4, '0')),
       CONCAT(ELT(1 + i % 5, 'Doomsday device', 'Hammock', 'Flamethrower', 'Monorail', 'Donut box'), ' mk ', i),
       ELT(1 + i % 3, 'industrial', 'leisure', 'food'),
       ROUND(9.49 + (i * 53 % 300) + (i % 100) / 100.0, 2),
       TIMESTAMP '2026-11-25 00:00:00' + INTERVAL ((i + 2) % 4) DAY
         + INTERVAL (i * 3571 % 86400) SECOND
         + INTERVAL (i * 7907 % 1000000) MICROSECOND
FROM _seq WHERE i <= 18;

-- Orders placed on day d = i % 4; shipped/delivered orders placed before the
-- last day get their update k = 1..(3 - d) days later, the others k = 0.
INSERT INTO orders
SELECT i,
       1 + (i * 13) % 55,
       status,
       ordered_at,
       CASE WHEN status IN ('shipped', 'delivered') AND d < 3
            THEN DATE(ordered_at) + INTERVAL (1 + i % (3 - d)) DAY + INTERVAL (i * 911 % 86400) SECOND
            ELSE ordered_at
       END
FROM (
  SELECT i,
         i % 4 AS d,
         ELT(1 + i % 6, 'cancelled', 'placed', 'shipped', 'delivered', 'delivered', 'placed') AS status,
         TIMESTAMP '2026-11-25 00:00:00' + INTERVAL (i % 4) DAY
           + INTERVAL (i * 3607 % 86400) SECOND
           + INTERVAL (i * 104723 % 1000000) MICROSECOND AS ordered_at
  FROM _seq WHERE i <= 260
) AS o;

INSERT INTO order_items
SELECT (o.order_id - 1) * 3 + k.i,
       o.order_id,
       p.product_id,
       1 + (o.order_id + k.i) % 4,
       p.unit_price,
       o.ordered_at
FROM orders AS o
JOIN _seq AS k ON k.i <= 1 + o.order_id % 3
JOIN products AS p ON p.product_id = 1 + (o.order_id * 7 + k.i * 5) % 18;

DROP TABLE _seq;

-- ------------------------------------------------- read-only tenant access
GRANT SELECT ON globex.* TO 'globex_reader'@'%';
FLUSH PRIVILEGES;
