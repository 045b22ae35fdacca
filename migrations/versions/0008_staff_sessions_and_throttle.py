"""Dashboard sessions kept on the server; sign-in attempts for the throttle.

``staff_sessions`` holds one row per sign-in: the SHA-256 of the random token
the browser's cookie carries, the account, when it began and was last seen,
and when and why it ended. Every request looks its session up, so ending a
session here (sign-out, password or role change, deactivation) ends it for
every copy of the cookie. ``staff.session_version``, which did that job from
inside the cookie, goes.

``sign_in_attempts`` holds the password checks the sign-in throttle let
through while they count: the account name as typed (lower-cased), the
address, when (the database's clock) and the outcome. The throttle counts and
adds a row under a lock, so parallel attempts cannot all slip under a limit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "end_reason in ('signed_out', 'idle', 'max_age', 'password_changed', "
            "'role_changed', 'deactivated')",
            name=op.f("ck_staff_sessions_end_reason_known"),
        ),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (end_reason IS NULL)",
            name=op.f("ck_staff_sessions_ended_with_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_staff_sessions_staff_id_staff"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_sessions_token_hash")),
    )
    # Ending every open session of an account.
    op.create_index(
        "ix_staff_sessions_staff_id_open",
        "staff_sessions",
        ["staff_id"],
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    # Sessions signed by the cookie alone carried this number; none survives.
    op.drop_column("staff", "session_version")

    op.create_table(
        "sign_in_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "outcome in ('pending', 'failed', 'succeeded', 'cleared')",
            name=op.f("ck_sign_in_attempts_outcome_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_attempts")),
    )
    op.create_index(
        "ix_sign_in_attempts_account_key_attempted_at",
        "sign_in_attempts",
        ["account_key", "attempted_at"],
    )
    op.create_index(
        "ix_sign_in_attempts_remote_addr_attempted_at",
        "sign_in_attempts",
        ["remote_addr", "attempted_at"],
    )
    op.create_index("ix_sign_in_attempts_attempted_at", "sign_in_attempts", ["attempted_at"])


def downgrade():
    op.drop_table("sign_in_attempts")
    op.add_column(
        "staff",
        sa.Column("session_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.drop_index("ix_staff_sessions_staff_id_open", table_name="staff_sessions")
    op.drop_table("staff_sessions")
