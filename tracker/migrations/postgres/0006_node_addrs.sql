-- Real networks: a node's further addresses (JSON array of `host:port`, e.g. its global IPv6
-- beside a mapped IPv4) and the SHA-256 of its FTPS certificate, which viewers pin.

ALTER TABLE nodes ADD COLUMN addrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN fingerprint TEXT;
