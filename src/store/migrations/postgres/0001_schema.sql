-- 0001_schema.sql — keel schema for PostgreSQL 15 (being written).
SELECT 1;
