-- Notifications to people go through an outbox. An event (opened, awaiting_approval, resolved) is written in the
-- transaction of the state change it reports, at most once per incident and kind, so a replay or a re-run adds
-- nothing. The dispatcher routes each event to the configured channels: one message per incident, channel and kind,
-- keyed by a stable idempotency key, delivered with retries and backoff until the sink takes it.
CREATE TABLE IF NOT EXISTS notification_events (
    id           bigserial PRIMARY KEY,
    incident_id  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('opened', 'awaiting_approval', 'resolved')),
    payload      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    routed_at    timestamptz,
    UNIQUE (incident_id, kind)
);
CREATE INDEX IF NOT EXISTS notification_events_unrouted_idx ON notification_events (id) WHERE routed_at IS NULL;

CREATE TABLE IF NOT EXISTS notification_outbox (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    event_id         bigint NOT NULL REFERENCES notification_events (id),
    incident_id      text NOT NULL,
    channel          text NOT NULL,
    kind             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX IF NOT EXISTS notification_outbox_due_idx ON notification_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notification_outbox_incident_idx ON notification_outbox (incident_id);

-- An incident resolved by its source (the intake's UPDATE) writes its event in that same transaction.
CREATE OR REPLACE FUNCTION notify_incident_resolved() RETURNS trigger AS $$
BEGIN
    IF NEW.resolved_at IS NOT NULL AND OLD.resolved_at IS NULL THEN
        INSERT INTO notification_events (incident_id, kind, payload)
        VALUES (NEW.id, 'resolved', jsonb_build_object(
            'service', NEW.service, 'severity', NEW.severity, 'alertname', NEW.alertname,
            'resolved_by', NEW.resolved_by, 'resolved_at', NEW.resolved_at))
        ON CONFLICT (incident_id, kind) DO NOTHING;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS incidents_resolved_notice ON incidents;
CREATE TRIGGER incidents_resolved_notice AFTER UPDATE OF resolved_at ON incidents
    FOR EACH ROW EXECUTE FUNCTION notify_incident_resolved();
