-- Alert intake: raw payloads, normalized alerts, dedup by open incident, and a durable queue of graph runs.

CREATE TABLE IF NOT EXISTS alert_payloads (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    path         text NOT NULL,
    format       text,
    body         jsonb NOT NULL
);

ALTER TABLE incidents ADD COLUMN IF NOT EXISTS dedup_key text;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS resolved_by text;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS alert_count integer NOT NULL DEFAULT 1;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS last_alert_at timestamptz NOT NULL DEFAULT now();
-- At most one open incident per alert group (dedup_key = fingerprint, set by the intake only): concurrent repeats
-- attach to it through INSERT .. ON CONFLICT, decided by the database whichever replica received them.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open_dedup ON incidents (dedup_key)
    WHERE resolved_at IS NULL AND dedup_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS alerts (
    id           bigserial PRIMARY KEY,
    payload_id   bigint NOT NULL REFERENCES alert_payloads (id),
    incident_id  text REFERENCES incidents (id),
    received_at  timestamptz NOT NULL DEFAULT now(),
    fingerprint  text NOT NULL,
    status       text NOT NULL,
    deduplicated boolean NOT NULL,
    alert        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_incident_idx ON alerts (incident_id);
CREATE INDEX IF NOT EXISTS alerts_fingerprint_idx ON alerts (fingerprint, received_at DESC);

-- Graph runs to do: a row exists before the 202 is sent; workers claim rows with SKIP LOCKED and hold an
-- advisory lock on the run id while it executes, so a run whose worker died is found by anyone who can take it.
CREATE TABLE IF NOT EXISTS runs (
    id           bigserial PRIMARY KEY,
    incident_id  text NOT NULL REFERENCES incidents (id),
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'queued',
    attempts     integer NOT NULL DEFAULT 0,
    claimed_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    error        text
);
CREATE INDEX IF NOT EXISTS runs_queued_idx ON runs (id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS runs_running_idx ON runs (id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS runs_incident_idx ON runs (incident_id);

-- One decision per approval gate (interrupt id): a second decision for the same gate is refused.
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS interrupt_id text;
CREATE UNIQUE INDEX IF NOT EXISTS approvals_gate_idx ON approvals (incident_id, interrupt_id) WHERE interrupt_id IS NOT NULL;
