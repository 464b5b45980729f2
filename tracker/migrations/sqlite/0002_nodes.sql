-- The live map of the network, and the bytes that moved through it.

CREATE TABLE nodes (
    id              TEXT    PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('cache', 'viewer')),
    bind_addr       TEXT    NOT NULL,
    advertise_addr  TEXT    NOT NULL,
    upload_bps      BIGINT  NOT NULL CHECK (upload_bps >= 0),
    storage_bytes   BIGINT  NOT NULL CHECK (storage_bytes >= 0),
    watching        TEXT,
    -- JSON array of {"video", "indices"}: what a cache holds, as last reported.
    holdings        TEXT    NOT NULL DEFAULT '[]',
    registered_ms   BIGINT  NOT NULL,
    last_seen_ms    BIGINT  NOT NULL
);
CREATE INDEX nodes_by_last_seen ON nodes (last_seen_ms);
CREATE INDEX nodes_by_account ON nodes (account_id);

-- Bytes moved per pair of nodes and movie in 10-second buckets: the load timeline
-- (origin→viewers, origin→caches, caches→viewers) and the flow views. Kinds are kept so the
-- history outlives the nodes. The sender reports what it sent; the receiver confirms what
-- it verified.
CREATE TABLE transfers (
    bucket          BIGINT  NOT NULL,
    from_node       TEXT    NOT NULL,
    from_kind       TEXT    NOT NULL,
    to_node         TEXT    NOT NULL,
    to_kind         TEXT    NOT NULL,
    video_id        TEXT    NOT NULL,
    reported_bytes  BIGINT  NOT NULL DEFAULT 0,
    confirmed_bytes BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, from_node, to_node, video_id)
);
CREATE INDEX transfers_by_bucket ON transfers (bucket);
