-- Operator commands: settings stored by `rivulet-tracker settings set` (they win over serve's
-- flags), accounts an operator disabled, and the hourly roll-up of old transfer rows.

CREATE TABLE settings (
    name   TEXT   PRIMARY KEY,
    value  BIGINT NOT NULL
);

ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- `transfers` rows older than a day, summed per hour (Unix seconds at the hour's start);
-- `bytes` is what the views count: per 10-second row the receiver's confirmed bytes where
-- there were any, the sender's report otherwise. Rows older than 90 days are deleted.
CREATE TABLE transfer_hours (
    hour            BIGINT  NOT NULL,
    from_node       TEXT    NOT NULL,
    from_kind       TEXT    NOT NULL,
    to_node         TEXT    NOT NULL,
    to_kind         TEXT    NOT NULL,
    video_id        TEXT    NOT NULL,
    reported_bytes  BIGINT  NOT NULL DEFAULT 0,
    confirmed_bytes BIGINT  NOT NULL DEFAULT 0,
    bytes           BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, from_node, to_node, video_id)
);
