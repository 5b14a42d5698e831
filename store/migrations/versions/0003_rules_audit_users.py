"""corrections that teach: rules, undo snapshots, the audit log and web users

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("match", sa.String(600), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("target_type", sa.String(10), nullable=True),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("actor", sa.String(320), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_rules_scope_match", "rules", ["scope", "match"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(320), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
    )
    with op.batch_alter_table("corrections") as batch:
        batch.add_column(sa.Column("rule_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("before", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("affected", sa.Integer(), nullable=False, server_default="0"))
        batch.create_foreign_key("fk_corrections_rule_id_rules", "rules", ["rule_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("rule_id", sa.Integer(), nullable=True))
        batch.create_index("ix_activities_rule_id", ["rule_id"])


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.drop_index("ix_activities_rule_id")
        batch.drop_column("rule_id")
    with op.batch_alter_table("corrections") as batch:
        batch.drop_constraint("fk_corrections_rule_id_rules", type_="foreignkey")
        batch.drop_column("affected")
        batch.drop_column("before")
        batch.drop_column("rule_id")
    op.drop_table("users")
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_rules_scope_match", "rules")
    op.drop_table("rules")
