"""Who created each API token and which token made each change; repeated
security events counted instead of stored one by one; the client's request id
kept beside the server's.

* ``api_tokens.created_by_id``/``created_by_label``: who created the token (an
  admin may create one owned by another account). Null for older tokens.
  Token names become unique per owner, case-insensitively, revoked and
  expired tokens included: a name on an audit entry must name one token.
  Older duplicates are renamed ``<name> #<id>`` (all but the oldest of each).
* ``user_audit.token_id``: the token a change came through;
  ``user_audit.client_request_id`` and ``security_events.client_request_id``:
  the ``X-Request-ID`` a client sent, never used as the request's own id.
* ``security_event_repeats``: events anyone can cause at will (refused tokens,
  CSRF failures...) are stored once per kind, address, account, variant (why
  a token was refused...) and time window in ``security_events``, which stays
  append-only; their repeats count up in this table, whose trigger lets
  ``count`` and ``last_seen`` only grow and refuses deletes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("api_tokens", sa.Column("created_by_id", sa.BigInteger(), nullable=True))
    op.add_column("api_tokens", sa.Column("created_by_label", sa.String(length=100), nullable=True))
    op.create_foreign_key(
        op.f("fk_api_tokens_created_by_id_staff"),
        "api_tokens",
        "staff",
        ["created_by_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    # Keep the oldest token of each name; the later ones get their id appended.
    op.execute(
        """
        UPDATE api_tokens AS later
        SET name = left(later.name, 100 - length(' #' || later.id)) || ' #' || later.id
        WHERE EXISTS (
            SELECT 1 FROM api_tokens AS earlier
            WHERE earlier.staff_id = later.staff_id
              AND lower(earlier.name) = lower(later.name)
              AND earlier.id < later.id
        )
        """
    )
    op.create_index(
        "uq_api_tokens_staff_id_lower_name",
        "api_tokens",
        ["staff_id", sa.literal_column("lower(name)")],
        unique=True,
    )

    op.add_column("user_audit", sa.Column("token_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "user_audit", sa.Column("client_request_id", sa.String(length=128), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_user_audit_token_id_api_tokens"),
        "user_audit",
        "api_tokens",
        ["token_id"],
        ["id"],
        ondelete="RESTRICT",
    )

    op.create_table(
        "security_event_repeats",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.BigInteger(), nullable=True),
        sa.Column("variant", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("count >= 1", name=op.f("ck_security_event_repeats_count_positive")),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_security_event_repeats_staff_id_staff"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_event_repeats")),
    )
    op.create_index(
        "uq_security_event_repeats_key",
        "security_event_repeats",
        ["event", "remote_addr", "staff_id", "variant", "window_start"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.execute(
        """
        CREATE FUNCTION security_event_repeats_count_up() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE'
               OR (NEW.id, NEW.event, NEW.remote_addr, NEW.variant, NEW.window_start,
                   NEW.first_seen)
                  IS DISTINCT FROM
                  (OLD.id, OLD.event, OLD.remote_addr, OLD.variant, OLD.window_start,
                   OLD.first_seen)
               OR NEW.staff_id IS DISTINCT FROM OLD.staff_id
               OR NEW.count < OLD.count
               OR NEW.last_seen < OLD.last_seen THEN
                RAISE EXCEPTION 'security_event_repeats only counts up: % is not allowed', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER security_event_repeats_count_up BEFORE UPDATE OR DELETE "
        "ON security_event_repeats FOR EACH ROW EXECUTE FUNCTION security_event_repeats_count_up()"
    )
    op.execute(
        "CREATE TRIGGER security_event_repeats_no_truncate BEFORE TRUNCATE "
        "ON security_event_repeats FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()"
    )

    op.add_column(
        "security_events", sa.Column("client_request_id", sa.String(length=128), nullable=True)
    )
    op.add_column("security_events", sa.Column("repeat_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_security_events_repeat_id_security_event_repeats"),
        "security_events",
        "security_event_repeats",
        ["repeat_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_unique_constraint(
        op.f("uq_security_events_repeat_id"), "security_events", ["repeat_id"]
    )
    # The security events page filters by kind, account and address, newest first.
    op.create_index(
        "ix_security_events_event_timestamp_id", "security_events", ["event", "timestamp", "id"]
    )
    op.create_index(
        "ix_security_events_lower_username_timestamp_id",
        "security_events",
        [sa.literal_column("lower(username)"), "timestamp", "id"],
    )
    op.create_index(
        "ix_security_events_remote_addr_timestamp_id",
        "security_events",
        ["remote_addr", "timestamp", "id"],
    )


def downgrade():
    op.drop_index("ix_security_events_remote_addr_timestamp_id", table_name="security_events")
    op.drop_index("ix_security_events_lower_username_timestamp_id", table_name="security_events")
    op.drop_index("ix_security_events_event_timestamp_id", table_name="security_events")
    op.drop_constraint(op.f("uq_security_events_repeat_id"), "security_events", type_="unique")
    op.drop_constraint(
        op.f("fk_security_events_repeat_id_security_event_repeats"),
        "security_events",
        type_="foreignkey",
    )
    op.drop_column("security_events", "repeat_id")
    op.drop_column("security_events", "client_request_id")
    op.execute("DROP TRIGGER security_event_repeats_no_truncate ON security_event_repeats")
    op.execute("DROP TRIGGER security_event_repeats_count_up ON security_event_repeats")
    op.execute("DROP FUNCTION security_event_repeats_count_up()")
    op.drop_index("uq_security_event_repeats_key", table_name="security_event_repeats")
    op.drop_table("security_event_repeats")

    op.drop_constraint(op.f("fk_user_audit_token_id_api_tokens"), "user_audit", type_="foreignkey")
    op.drop_column("user_audit", "client_request_id")
    op.drop_column("user_audit", "token_id")

    # Renamed duplicate token names keep their new names.
    op.drop_index("uq_api_tokens_staff_id_lower_name", table_name="api_tokens")
    op.drop_constraint(op.f("fk_api_tokens_created_by_id_staff"), "api_tokens", type_="foreignkey")
    op.drop_column("api_tokens", "created_by_label")
    op.drop_column("api_tokens", "created_by_id")
