"""The REST API (/api/v1), a module per resource; api/rest/common.py holds what they share."""
