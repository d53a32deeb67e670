"""The statuses an incident goes through (light: the command line's help lists them without the database driver)."""

STATUSES = ("queued", "investigating", "awaiting_approval", "completed", "not_an_incident", "failed", "resolved")
