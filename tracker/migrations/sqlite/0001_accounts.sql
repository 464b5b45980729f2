-- Accounts, sessions, purchases and what was watched. Portable SQL: runs on SQLite and
-- PostgreSQL alike (integers are 64-bit on both; booleans are 0/1 integers).

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    username        TEXT    NOT NULL,
    -- Lowercased username: names are unique regardless of case.
    username_key    TEXT    NOT NULL UNIQUE,
    password_hash   TEXT    NOT NULL,
    admin           INTEGER NOT NULL DEFAULT 0,
    balance         BIGINT  NOT NULL CHECK (balance >= 0),
    uploaded_bytes  BIGINT  NOT NULL DEFAULT 0 CHECK (uploaded_bytes >= 0),
    credited_bytes  BIGINT  NOT NULL DEFAULT 0 CHECK (credited_bytes >= 0),
    created_at      BIGINT  NOT NULL
);

-- Only a hash of each token is stored; the token itself lives with the client.
CREATE TABLE sessions (
    token_hash  TEXT    PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE TABLE purchases (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    video_id    TEXT    NOT NULL,
    price       BIGINT  NOT NULL CHECK (price >= 0),
    bought_at   BIGINT  NOT NULL,
    PRIMARY KEY (account_id, video_id)
);

CREATE TABLE watched (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    video_id    TEXT    NOT NULL,
    first_at    BIGINT  NOT NULL,
    last_at     BIGINT  NOT NULL,
    PRIMARY KEY (account_id, video_id)
);
