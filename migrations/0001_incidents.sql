-- Incidents known to this installation: one row per incident (thread id = incident id).
CREATE TABLE IF NOT EXISTS incidents (
    id           text PRIMARY KEY,
    fingerprint  text NOT NULL,
    service      text NOT NULL,
    alertname    text NOT NULL,
    source       text NOT NULL,
    status       text NOT NULL,
    severity     text,
    root_cause   jsonb,
    alert        jsonb NOT NULL,
    telemetry    jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS incidents_status_idx ON incidents (status, created_at DESC);
CREATE INDEX IF NOT EXISTS incidents_service_idx ON incidents (service, created_at DESC);

-- Every human decision at the approval gate, kept even when the run has moved on.
CREATE TABLE IF NOT EXISTS approvals (
    id           bigserial PRIMARY KEY,
    incident_id  text NOT NULL REFERENCES incidents (id),
    decision     text NOT NULL,
    approver     text NOT NULL,
    comment      text NOT NULL DEFAULT '',
    decided_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS approvals_incident_idx ON approvals (incident_id);
