-- Earnings over time: what an account's caches were credited, summed per minute (one row
-- per account and minute however many heartbeat batches settle in it, so the table grows
-- with time, not with traffic): bytes reported, newly credited, and the points that earned.
-- The points screen draws these as buckets (`GET /api/v1/me/earnings`).

CREATE TABLE credit_minutes (
    account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    minute          BIGINT  NOT NULL,
    uploaded_bytes  BIGINT  NOT NULL,
    credited_bytes  BIGINT  NOT NULL,
    points          BIGINT  NOT NULL,
    PRIMARY KEY (account_id, minute)
);
