-- Entity tokens: issued once to the registrant who proved ownership of an entityID; the
-- store keeps only their SHA-256. A token manages its own entity (policy, metadata) only.
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    entity_id TEXT NOT NULL
);
CREATE INDEX tokens_entity ON tokens (entity_id);
