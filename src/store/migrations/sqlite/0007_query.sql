-- keel schema v7 (SQLite): the query routes (R-QRY-1, R-QRY-7).
-- GET /v1/sessions lists newest first by (started_at DESC, id DESC). The
-- index of 0004 holds (org_id, started_at DESC) and, as every index of a
-- WITHOUT ROWID table, the rest of the primary key after it: id ascending.
-- That order cannot serve the list without a sort of each run of equal
-- started_at, so the index is rebuilt with id descending. Same columns, same
-- size, same cost on the ingestion path: it replaces the old one rather than
-- adding a second.
DROP INDEX sessions_started;
CREATE INDEX sessions_started ON sessions(org_id, started_at DESC, id DESC);
