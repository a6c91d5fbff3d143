"""The scheduler daemon: turns due leads into outbox rows, in the lead's own transaction."""
