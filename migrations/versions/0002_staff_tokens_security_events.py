"""Staff accounts, API tokens, security events; who and from where on audit entries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("session_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role in ('admin', 'support', 'auditor')", name=op.f("ck_staff_role_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
    )
    # Usernames are unique whatever their case.
    op.create_index(
        "uq_staff_lower_username", "staff", [sa.literal_column("lower(username)")], unique=True
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("staff_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_api_tokens_staff_id_staff"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index("ix_api_tokens_staff_id", "api_tokens", ["staff_id"])

    op.create_table(
        "security_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "timestamp",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("staff_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("actor_label", sa.String(length=100), nullable=True),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_security_events_staff_id_staff"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
    )
    op.create_index("ix_security_events_timestamp_id", "security_events", ["timestamp", "id"])
    # Rate limiting counts recent failed sign-ins per account and per address.
    op.create_index(
        "ix_security_events_event_username",
        "security_events",
        ["event", sa.literal_column("lower(username)"), "timestamp"],
    )
    op.create_index(
        "ix_security_events_event_remote_addr",
        "security_events",
        ["event", "remote_addr", "timestamp"],
    )

    # Entries written before accounts existed keep NULL actors.
    op.add_column("user_audit", sa.Column("actor_id", sa.BigInteger(), nullable=True))
    op.add_column("user_audit", sa.Column("actor_label", sa.String(length=100), nullable=True))
    op.add_column("user_audit", sa.Column("channel", sa.String(length=8), nullable=True))
    op.add_column("user_audit", sa.Column("channel_detail", sa.String(length=100), nullable=True))
    op.add_column("user_audit", sa.Column("remote_addr", sa.String(length=64), nullable=True))
    op.add_column("user_audit", sa.Column("request_id", sa.String(length=128), nullable=True))
    op.create_check_constraint(
        op.f("ck_user_audit_channel_known"), "user_audit", "channel in ('web', 'api', 'cli')"
    )
    op.create_foreign_key(
        op.f("fk_user_audit_actor_id_staff"),
        "user_audit",
        "staff",
        ["actor_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        "ix_user_audit_actor_id_timestamp_id", "user_audit", ["actor_id", "timestamp", "id"]
    )


def downgrade():
    op.drop_index("ix_user_audit_actor_id_timestamp_id", table_name="user_audit")
    op.drop_constraint(op.f("fk_user_audit_actor_id_staff"), "user_audit", type_="foreignkey")
    op.drop_constraint(op.f("ck_user_audit_channel_known"), "user_audit", type_="check")
    for column in (
        "request_id",
        "remote_addr",
        "channel_detail",
        "channel",
        "actor_label",
        "actor_id",
    ):
        op.drop_column("user_audit", column)
    op.drop_table("security_events")
    op.drop_table("api_tokens")
    op.drop_table("staff")
