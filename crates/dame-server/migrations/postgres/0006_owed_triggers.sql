-- Triggers the broker owes an agent: a rollback or a re-download outside a flow, from its
-- first sending until the agent acknowledges it (being retried, or given up after its
-- retries), planned again when `due` has passed while the pair's standing still asks for it.
-- One per addressed entity and peer: a later trigger of the pair (a later `issued`, Unix
-- milliseconds) replaces the earlier one. `since` (Unix seconds) is when the pair became owed:
-- a row older than the broker's limit is dropped.
CREATE TABLE owed_triggers (
    recipient TEXT NOT NULL,
    about TEXT NOT NULL,
    action TEXT NOT NULL,
    due BIGINT NOT NULL,
    issued BIGINT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (recipient, about)
);
CREATE INDEX owed_triggers_due ON owed_triggers (due);
