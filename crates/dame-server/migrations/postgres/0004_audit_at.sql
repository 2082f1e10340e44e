-- Audit events are deleted after the configured retention (audit_retention_days): by age.
CREATE INDEX audit_at ON audit (at);
