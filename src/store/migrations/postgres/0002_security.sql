-- 0002_security.sql — row-level security, roles and partitions (being written).
SELECT 1;
