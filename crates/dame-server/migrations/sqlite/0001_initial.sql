-- The broker's store (dame-server): entities, relationships, flows, rules, audit log.
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
    expires BIGINT NOT NULL
);
CREATE INDEX flows_expires ON flows (expires);
CREATE TABLE rules (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    json TEXT NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    event TEXT NOT NULL
);
