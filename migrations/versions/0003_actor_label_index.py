"""Index actor labels, so filtering the timeline by a non-account actor is a scan
of that actor's entries, not of the whole log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_user_audit_lower_actor_label_timestamp_id",
        "user_audit",
        [sa.literal_column("lower(actor_label)"), "timestamp", "id"],
        postgresql_where=sa.text("actor_label IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_user_audit_lower_actor_label_timestamp_id", table_name="user_audit")
