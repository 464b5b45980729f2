-- Accounting: who owns each node (kept after the node leaves, so late confirmations still
-- find the account), running totals per sender, receiver and movie, and the points already
-- paid out for credited bytes.

CREATE TABLE node_owners (
    node_id     TEXT    PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL
);

-- Bytes the sender reported and the receiver confirmed as verified, over all time; the
-- sender's account is credited with the smaller of the two.
CREATE TABLE pair_totals (
    from_node       TEXT    NOT NULL,
    to_node         TEXT    NOT NULL,
    video_id        TEXT    NOT NULL,
    reported_bytes  BIGINT  NOT NULL DEFAULT 0,
    confirmed_bytes BIGINT  NOT NULL DEFAULT 0,
    credited_bytes  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (from_node, to_node, video_id)
);

ALTER TABLE accounts ADD COLUMN earned_points BIGINT NOT NULL DEFAULT 0;
