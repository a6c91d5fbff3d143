"""The HTTP service (`python -m api`): REST under /api/v1, its OpenAPI and docs, one-click
unsubscribe at /u/{token}, /healthz. Every route calls the use cases in ops/."""
