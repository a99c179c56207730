"""The durable execution archive: SQLAlchemy 2 (async) tables, Alembic migrations and one repository.

Shared by the operator (the one writer) and the API (a reader); neither imports the other. SQLite
(aiosqlite, WAL) in the state directory by default, PostgreSQL (asyncpg) in production.
"""
