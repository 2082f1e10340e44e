-- The broker's store on PostgreSQL (dame-server): the same tables as the SQLite store
-- (migrations/sqlite), for several broker instances sharing one database.
CREATE TABLE entities (
    entity_id TEXT PRIMARY KEY NOT NULL,
    xml TEXT NOT NULL,
    policy TEXT NOT NULL
);
CREATE TABLE relationships (
    idp TEXT NOT NULL,
    sp TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (idp, sp)
);
CREATE TABLE flows (
    id TEXT PRIMARY KEY NOT NULL,
    record TEXT NOT NULL,
    expires BIGINT NOT NULL,
    due BIGINT NOT NULL DEFAULT 0,
    idp TEXT,
    sp TEXT
);
CREATE INDEX flows_expires ON flows (expires);
CREATE INDEX flows_due ON flows (due);
CREATE INDEX flows_pair ON flows (idp, sp);
CREATE TABLE rules (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    json TEXT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL
);
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
