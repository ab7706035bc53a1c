-- The sequence is compared bytewise: a database's default collation (en_US.UTF-8, ICU) orders
-- text by language rules, not by code point. SQLite's default (BINARY) already compares bytes.
ALTER TABLE devices ALTER COLUMN connection_sequence TYPE TEXT COLLATE "C";
