-- Memory of past incidents: what each concluded incident was (root-cause service, fault type, its error templates)
-- and what fixed it, so a new incident's brief can link similar past ones.
CREATE TABLE IF NOT EXISTS incident_memory (
    incident_id      text PRIMARY KEY,
    alerted_service  text NOT NULL,
    service          text NOT NULL,
    fault_type       text NOT NULL,
    templates        text[] NOT NULL DEFAULT '{}',
    summary          text NOT NULL DEFAULT '',
    fix              jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS incident_memory_cause_idx ON incident_memory (service, fault_type, created_at DESC);
CREATE INDEX IF NOT EXISTS incident_memory_templates_idx ON incident_memory USING gin (templates);
