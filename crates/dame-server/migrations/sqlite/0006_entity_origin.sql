-- Who vouched for an entity's metadata: 'operator' (an import) or 'owner' (a registration by
-- proof of ownership, an upload with the entity token); NULL for rows stored before it was
-- recorded, which the broker checks like an owner's when it loads them.
ALTER TABLE entities ADD COLUMN origin TEXT;
