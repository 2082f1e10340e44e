-- Unauthenticated flows (discovery, AuthnRequest1, before Response2) are capped per client
-- address and in all: `source` is the client's key (IPv4 address, or IPv6 /64) while the
-- flow is unauthenticated, NULL once its user is authenticated.
ALTER TABLE flows ADD COLUMN source TEXT;
CREATE INDEX flows_source ON flows (source, expires);
