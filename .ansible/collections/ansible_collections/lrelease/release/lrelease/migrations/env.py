"""Alembic's entry point for lrelease's state database. lrelease runs it itself on open
(lrelease/statedb.py, ``_alembic``), handing over its connection inside its own write transaction
(serialised with every other writer), so the migrations and the version stamp commit together."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("lrelease migrates its state database itself when it opens it (any lrelease command)")
context.configure(connection=connection, transactional_ddl=False)
context.run_migrations()
