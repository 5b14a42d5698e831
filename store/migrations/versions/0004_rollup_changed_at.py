"""when an entity's roll-ups last changed, for `inkless export entities --changed`

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 00:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("companies", "contacts", "deals")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("rollup_changed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("rollup_changed_at")
