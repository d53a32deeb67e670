"""Notifications to people: a Postgres outbox (outbox.py), routes (config.py) and one adapter per sink."""
