"""Profiles (users) and their audit trail (user_audit).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    # Trigram indexes make the substring search (ILIKE '%q%') on names and
    # emails an index scan. pg_trgm is a trusted extension: the database
    # owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "char_length(btrim(name)) between 1 and 255", name=op.f("ck_users_name_length")
        ),
        sa.CheckConstraint(
            "char_length(email) between 3 and 255", name=op.f("ck_users_email_length")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_users_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    # Email is unique case-insensitively among profiles that are not deleted.
    op.create_index(
        "uq_users_lower_email_active",
        "users",
        [sa.literal_column("lower(email)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_users_name_trgm",
        "users",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_users_email_trgm",
        "users",
        ["email"],
        postgresql_using="gin",
        postgresql_ops={"email": "gin_trgm_ops"},
    )

    op.create_table(
        "user_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column(
            "timestamp",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "previous_data",
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
            nullable=True,
        ),
        sa.Column("new_data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("changed_fields", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "operation in ('create', 'update', 'delete', 'restore')",
            name=op.f("ck_user_audit_operation_known"),
        ),
        sa.CheckConstraint(
            "(operation = 'create') = (previous_data is null)",
            name=op.f("ck_user_audit_previous_data_iff_not_create"),
        ),
        # RESTRICT: a profile that has history can never be hard-deleted.
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_audit_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_audit")),
    )
    # Keyset pagination of the timeline, newest first: overall, per profile,
    # per operation. The GIN index serves the "changed field" filter.
    op.create_index("ix_user_audit_timestamp_id", "user_audit", ["timestamp", "id"])
    op.create_index(
        "ix_user_audit_user_id_timestamp_id", "user_audit", ["user_id", "timestamp", "id"]
    )
    op.create_index(
        "ix_user_audit_operation_timestamp_id", "user_audit", ["operation", "timestamp", "id"]
    )
    op.create_index(
        "ix_user_audit_changed_fields", "user_audit", ["changed_fields"], postgresql_using="gin"
    )


def downgrade():
    op.drop_table("user_audit")
    op.drop_table("users")
