"""Index request ids, so the timeline filtered by one request (linked from a
profile's history) reads that request's entries, not the whole log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_user_audit_request_id_timestamp_id",
        "user_audit",
        ["request_id", "timestamp", "id"],
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_user_audit_request_id_timestamp_id", table_name="user_audit")
