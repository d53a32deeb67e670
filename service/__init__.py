"""The running service: settings, auth, alert intake and grouping, the incident store, the run queue and workers,
and the HTTP routers that server.py wires into the app (DESIGN.md 1 and 4.4)."""
