"""PostgreSQL access: the pool, named SQL queries, repositories and the migration runner."""
