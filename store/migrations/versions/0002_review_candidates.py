"""keep ranked deal candidates on activities for the review queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 15:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("candidates", sa.JSON(), nullable=True))
        batch.create_index("ix_activities_status", ["status"])


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.drop_index("ix_activities_status")
        batch.drop_column("candidates")
