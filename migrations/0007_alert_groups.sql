-- Alert groups with a life cycle. A group (dedup_key) absorbs repeats only while its incident is open; it closes
-- when the incident concludes (completed, not an incident), fails, is resolved (by its source or by a person), or
-- when no alert of the group came for the configured time. A closed group's next firing alert opens a new incident.
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS closed_at timestamptz;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS closed_reason text
    CHECK (closed_reason IN ('concluded', 'failed', 'resolved', 'expired'));
UPDATE incidents SET closed_at = resolved_at, closed_reason = 'resolved'
    WHERE resolved_at IS NOT NULL AND closed_at IS NULL;
UPDATE incidents SET closed_at = updated_at, closed_reason = 'concluded'
    WHERE closed_at IS NULL AND status IN ('completed', 'not_an_incident');
UPDATE incidents SET closed_at = updated_at, closed_reason = 'failed' WHERE closed_at IS NULL AND status = 'failed';
DROP INDEX IF EXISTS incidents_open_dedup;
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_group ON incidents (dedup_key)
    WHERE closed_at IS NULL AND dedup_key IS NOT NULL;
-- The sweep for groups past their time to live reads open groups by their last alert.
CREATE INDEX IF NOT EXISTS incidents_open_last_alert ON incidents (last_alert_at) WHERE closed_at IS NULL;
-- The source's resolution finds the group's unresolved incidents, closed or not.
CREATE INDEX IF NOT EXISTS incidents_unresolved_group ON incidents (dedup_key)
    WHERE resolved_at IS NULL AND dedup_key IS NOT NULL;

-- A decision holds for the patch it was taken on: a replay that proposes the same patch again meets the decision
-- already taken instead of a new question (sha256 of the diff).
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS patch_digest text;
CREATE INDEX IF NOT EXISTS approvals_patch_idx ON approvals (incident_id, patch_digest);
