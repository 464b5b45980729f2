-- Earnings over time: one row each time an account's caches are credited (a heartbeat batch
-- settles), with the bytes reported and newly credited and the points that earned. The
-- points screen draws these as buckets (`GET /api/v1/me/earnings`).

CREATE TABLE credit_events (
    account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at_ms           BIGINT  NOT NULL,
    uploaded_bytes  BIGINT  NOT NULL,
    credited_bytes  BIGINT  NOT NULL,
    points          BIGINT  NOT NULL
);

CREATE INDEX credit_events_by_account ON credit_events (account_id, at_ms);
