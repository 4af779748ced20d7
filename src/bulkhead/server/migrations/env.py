"""Alembic environment: runs migrations against the URL the server was given."""

from alembic import context
from sqlalchemy import create_engine, pool

from bulkhead.server.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None
connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
