-- Dashboard sign-ins kept on the server: the browser holds a random session id (signed), this table its hash, who
-- signed in and the session's CSRF token; signing out deletes the row. Shared by every replica and process.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash     bytea PRIMARY KEY,
    identity    text NOT NULL,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expiry_idx ON dashboard_sessions (expires_at);

-- Failed dashboard sign-ins by client address, for throttling (rows older than the window are deleted as new ones
-- come).
CREATE TABLE IF NOT EXISTS login_failures (
    client     text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS login_failures_client_idx ON login_failures (client, failed_at);
