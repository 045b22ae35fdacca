"""Tamper evidence: a keyed hash chain over the audit entries.

``audit_chain`` links every entry, in a gap-free sequence, to a keyed hash of
its content and of the previous link's hash. The key lives in the
application's configuration, never in the database, so nobody with only
database access can rewrite an entry and its hashes consistently.
``audit_chain_head`` is the newest link; writers lock its single row to
append, which serializes appends for the shortest possible time, and the
primary key on ``seq`` turns any fork into an error instead of a silent branch.

Entries the safety-net trigger writes (changes that bypassed the app) cannot be
hashed in the database, which has no key: the trigger queues them in
``audit_chain_pending`` and the application seals them into the chain on its
next write, or ``flask audit seal``. Entries that exist before this migration
are queued the same way.

``audit_verifications`` keeps the result of every ``flask audit verify``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_chain", "audit_verifications")


def upgrade():
    op.create_table(
        "audit_chain",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("seq > 0", name=op.f("ck_audit_chain_seq_positive")),
        sa.CheckConstraint("octet_length(hash) = 32", name=op.f("ck_audit_chain_hash_sha256")),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["user_audit.id"],
            name=op.f("fk_audit_chain_entry_id_user_audit"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_audit_chain_entry_id")),
    )
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.execute(
        "INSERT INTO audit_chain_head (id, seq, hash) "
        "VALUES (1, 0, decode(repeat('00', 32), 'hex'))"
    )
    op.create_table(
        "audit_chain_pending",
        sa.Column("entry_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["user_audit.id"],
            name=op.f("fk_audit_chain_pending_entry_id_user_audit"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_audit_chain_pending")),
    )
    op.execute("INSERT INTO audit_chain_pending (entry_id) SELECT id FROM user_audit")
    op.create_table(
        "audit_verifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("entries_checked", sa.BigInteger(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(), nullable=False),
        sa.Column("pending_entries", sa.BigInteger(), nullable=False),
        sa.Column("drifted_profiles", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_seq", sa.BigInteger(), nullable=True),
        sa.Column("first_bad_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("verified_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verifications")),
    )
    op.create_index("ix_audit_verifications_finished_at", "audit_verifications", ["finished_at"])

    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()"
        )
    # The head only ever moves forward by the links appended with it.
    op.execute(
        """
        CREATE FUNCTION audit_chain_head_forward_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' OR NEW.seq < OLD.seq OR NEW.id <> OLD.id THEN
                RAISE EXCEPTION 'audit_chain_head only moves forward: % is not allowed', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_chain_head_forward_only BEFORE UPDATE OR DELETE "
        "ON audit_chain_head FOR EACH ROW EXECUTE FUNCTION audit_chain_head_forward_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head "
        "FOR EACH STATEMENT EXECUTE FUNCTION refuse_append_only_change()"
    )

    # Writes that bypass the app: say who the database knows is acting (the
    # app's actor if the transaction came from the app, else the database
    # role and program), and queue the entry for sealing into the chain.
    op.drop_constraint(op.f("ck_user_audit_channel_known"), "user_audit", type_="check")
    op.create_check_constraint(
        "channel_known", "user_audit", "channel in ('web', 'api', 'cli', 'database')"
    )
    op.execute(SAFETY_NET_WITH_ATTRIBUTION)


SAFETY_NET_WITH_ATTRIBUTION = """
CREATE OR REPLACE FUNCTION users_audit_safety_net() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous jsonb;
    current jsonb := profile_snapshot(NEW);
    fields text[];
    operation text;
    entry_id bigint;
BEGIN
    IF current_setting('profile_audit.capturing', true) = 'on' THEN
        RETURN NULL;  -- the application's flush records this change itself
    END IF;
    IF TG_OP = 'INSERT' THEN
        operation := 'create';
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE current -> f <> 'null'::jsonb);
    ELSE
        previous := profile_snapshot(OLD);
        IF previous = current THEN
            RETURN NULL;  -- nothing the audit tracks has changed
        END IF;
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE previous -> f IS DISTINCT FROM current -> f);
        operation := CASE
            WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete'
            WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN 'restore'
            ELSE 'update'
        END;
    END IF;
    INSERT INTO user_audit
        (user_id, operation, previous_data, new_data, changed_fields, version,
         actor_label, channel, channel_detail, remote_addr, unattributed)
    VALUES (
        NEW.id, operation, previous, current, fields, NEW.version,
        left(coalesce(nullif(current_setting('profile_audit.actor', true), ''),
                      'db:' || session_user), 100),
        'database',
        left(nullif(current_setting('application_name', true), ''), 100),
        host(inet_client_addr()),
        true
    )
    RETURNING id INTO entry_id;
    INSERT INTO audit_chain_pending (entry_id) VALUES (entry_id);
    RETURN NULL;
END
$$
"""

SAFETY_NET_WITHOUT_ATTRIBUTION = """
CREATE OR REPLACE FUNCTION users_audit_safety_net() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous jsonb;
    current jsonb := profile_snapshot(NEW);
    fields text[];
    operation text;
BEGIN
    IF current_setting('profile_audit.capturing', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        operation := 'create';
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE current -> f <> 'null'::jsonb);
    ELSE
        previous := profile_snapshot(OLD);
        IF previous = current THEN
            RETURN NULL;
        END IF;
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE previous -> f IS DISTINCT FROM current -> f);
        operation := CASE
            WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete'
            WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN 'restore'
            ELSE 'update'
        END;
    END IF;
    INSERT INTO user_audit
        (user_id, operation, previous_data, new_data, changed_fields, version,
         unattributed)
    VALUES (NEW.id, operation, previous, current, fields, NEW.version, true);
    RETURN NULL;
END
$$
"""


def downgrade():
    op.execute(SAFETY_NET_WITHOUT_ATTRIBUTION)
    # Entries the trigger attributed to the database channel keep their rows:
    # the older rule applies to new rows only.
    op.drop_constraint(op.f("ck_user_audit_channel_known"), "user_audit", type_="check")
    op.execute(
        "ALTER TABLE user_audit ADD CONSTRAINT ck_user_audit_channel_known "
        "CHECK (channel in ('web', 'api', 'cli')) NOT VALID"
    )
    op.execute("DROP TRIGGER audit_chain_head_no_truncate ON audit_chain_head")
    op.execute("DROP TRIGGER audit_chain_head_forward_only ON audit_chain_head")
    op.execute("DROP FUNCTION audit_chain_head_forward_only()")
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.drop_index("ix_audit_verifications_finished_at", table_name="audit_verifications")
    op.drop_table("audit_verifications")
    op.drop_table("audit_chain_pending")
    op.drop_table("audit_chain_head")
    op.drop_table("audit_chain")
