-- keel schema v10 (SQLite): the funnel reads only an index (R-QRY-5).
-- POST /v1/analytics/funnel walks each step type's events in a window by
-- events_type_ts (org_id, type, ts) and needs each event's session_id, which
-- that index did not hold: one primary-key read per event, the funnel's
-- whole cost at millions of events. The index is rebuilt with id made
-- explicit (it was the implicit primary-key suffix, so the order is the same
-- and the keyset walk of GET /v1/events?type= is served as before) and
-- session_id after it, so a funnel by session never reads the table. Still
-- three indexes on events: each entry grows by the session id only.
DROP INDEX events_type_ts;
CREATE INDEX events_type_ts ON events(org_id, type, ts, id, session_id);
