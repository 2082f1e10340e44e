-- What several broker instances share besides the flows themselves (and what the
-- flow selections need): when a flow is next due, the pair an exchanging flow waits for,
-- one-time values already used, rate-limit windows, and change counters that tell an
-- instance to reload its registry or its relationships.
ALTER TABLE flows ADD COLUMN due BIGINT NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN idp TEXT;
ALTER TABLE flows ADD COLUMN sp TEXT;
CREATE INDEX flows_due ON flows (due);
CREATE INDEX flows_pair ON flows (idp, sp);
CREATE TABLE consumed (
    key TEXT PRIMARY KEY NOT NULL,
    until BIGINT NOT NULL
);
CREATE TABLE rate (
    key TEXT NOT NULL,
    win BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (key, win)
);
CREATE TABLE generation (
    name TEXT PRIMARY KEY NOT NULL,
    n BIGINT NOT NULL
);
INSERT INTO generation (name, n) VALUES ('registry', 0), ('relationships', 0);
