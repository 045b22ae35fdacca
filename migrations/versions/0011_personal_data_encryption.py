"""Personal data in the audit trail encrypted per profile, so that it can be erased.

- ``profile_data_keys``: one data key per profile, wrapped by the master key
  (``webapp.audit.personal_data``); erasure nulls ``wrapped_key``.
- ``users.email_index``: the keyed blind index of the email, unique among
  active profiles; ``users.erased_at``; the ``erase`` operation.
- The safety net can no longer compare a save's entry with the row (its
  personal values are ciphertext): at COMMIT each row change claims one sealed
  entry of its transaction with its profile, version and ``deleted_at``, so
  that a second change of the same row version around the application still
  gets its own entry.
- Entries the safety net writes hold clear values until the sealer encrypts
  them, before linking: the one change ``user_audit`` accepts is that one, on
  an unsealed, unlinked entry of the safety net, which it seals; the rest of
  the row must stay as it is.

Entries written before this revision keep their clear values until
``flask privacy encrypt-trail`` encrypts them (README, "Privacy").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SAFETY_NET_WITH_CLAIMS = """
CREATE OR REPLACE FUNCTION users_audit_safety_net() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous jsonb;
    current jsonb := profile_snapshot(NEW);
    fields text[];
    operation text;
    claims text;
    claimed text := coalesce(current_setting('profile_audit.claimed_entries', true), '');
    entry_id bigint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        previous := profile_snapshot(OLD);
        IF previous = current THEN
            RETURN NULL;  -- nothing the audit tracks has changed
        END IF;
    END IF;
    -- Deferred to COMMIT: the entry a save wrote for this row change is there
    -- by now. Only a sealed entry of this very transaction counts (a forged
    -- seal that silences this check is named by verification), and each
    -- counts for one row change: a second change of the same row version
    -- made around the application gets an entry of its own.
    SELECT a.id INTO entry_id FROM user_audit a
    WHERE a.user_id = NEW.id AND a.version = NEW.version
      AND a.new_data -> 'deleted_at' = current -> 'deleted_at'
      AND a.seal IS NOT NULL AND a.xmin = pg_current_xact_id()::xid
      AND NOT a.id::text = ANY (string_to_array(claimed, ','))
    ORDER BY a.id LIMIT 1;
    IF entry_id IS NOT NULL THEN
        PERFORM set_config('profile_audit.claimed_entries', claimed || ',' || entry_id, true);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        operation := 'create';
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE current -> f <> 'null'::jsonb);
    ELSE
        fields := ARRAY(SELECT f FROM unnest(ARRAY['name', 'email', 'deleted_at']) f
                        WHERE previous -> f IS DISTINCT FROM current -> f);
        operation := CASE
            WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete'
            WHEN OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN 'restore'
            ELSE 'update'
        END;
    END IF;
    -- What the session says about itself is kept, but only as an untrusted
    -- claim: any client can set these.
    claims := concat_ws('; ',
        'untrusted',
        'actor=' || nullif(current_setting('profile_audit.actor', true), ''),
        'application=' || nullif(current_setting('application_name', true), ''));
    INSERT INTO user_audit
        (user_id, operation, previous_data, new_data, changed_fields, version,
         actor_label, channel, channel_detail, remote_addr, unattributed)
    VALUES (
        NEW.id, operation, previous, current, fields, NEW.version,
        left('db:' || session_user, 100),
        'database',
        CASE WHEN claims = 'untrusted' THEN NULL ELSE left(claims, 100) END,
        host(inet_client_addr()),
        true
    );
    RETURN NULL;
END
$$
"""

# Every column but the snapshots and the seal: the sealer's encryption of a
# safety-net entry must leave them as they are.
_KEPT = (
    "id, user_id, operation, timestamp, changed_fields, version, reason, actor_id, "
    "actor_label, channel, channel_detail, remote_addr, request_id, unattributed, "
    "token_id, client_request_id"
)
_OLD_KEPT = ", ".join(f"OLD.{name.strip()}" for name in _KEPT.split(","))
_NEW_KEPT = ", ".join(f"NEW.{name.strip()}" for name in _KEPT.split(","))

USER_AUDIT_APPEND_ONLY = f"""
CREATE FUNCTION user_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The sealer encrypting, and sealing, an entry the safety net wrote in
    -- clear, before linking it. A seal made without the key fails verification.
    IF TG_OP = 'UPDATE' AND OLD.unattributed AND OLD.seal IS NULL AND NEW.seal IS NOT NULL
       AND ROW({_NEW_KEPT}) IS NOT DISTINCT FROM ROW({_OLD_KEPT})
       AND (OLD.previous_data IS NULL) = (NEW.previous_data IS NULL)
       AND EXISTS (SELECT 1 FROM audit_chain_pending p WHERE p.entry_id = OLD.id)
       AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.entry_id = OLD.id)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit records are only ever inserted.';
END
$$
"""  # noqa: S608 (only this module's column names are formatted in)


def upgrade():
    op.create_table(
        "profile_data_keys",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("master_key_id", sa.String(length=32), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(wrapped_key IS NULL) = (erased_at IS NOT NULL) "
            "AND (wrapped_key IS NULL) = (master_key_id IS NULL)",
            name=op.f("ck_profile_data_keys_erased_or_wrapped"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_profile_data_keys_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_profile_data_keys")),
    )
    op.create_index("ix_profile_data_keys_master_key_id", "profile_data_keys", ["master_key_id"])

    op.add_column("users", sa.Column("email_index", sa.LargeBinary(), nullable=True))
    op.add_column("users", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_users_email_index_active",
        "users",
        ["email_index"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.drop_constraint(op.f("ck_user_audit_operation_known"), "user_audit", type_="check")
    op.create_check_constraint(
        "operation_known",
        "user_audit",
        "operation in ('create', 'update', 'delete', 'restore', 'erase')",
    )

    op.execute(SAFETY_NET_WITH_CLAIMS)
    op.execute(USER_AUDIT_APPEND_ONLY)
    op.execute("DROP TRIGGER user_audit_append_only ON user_audit")
    op.execute(
        "CREATE TRIGGER user_audit_append_only BEFORE UPDATE OR DELETE ON user_audit "
        "FOR EACH ROW EXECUTE FUNCTION user_audit_append_only()"
    )


def _revision(name: str):
    # Module names that start with a digit cannot be imported by name.
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade():
    op.execute("DROP TRIGGER user_audit_append_only ON user_audit")
    op.execute(
        "CREATE TRIGGER user_audit_append_only BEFORE UPDATE OR DELETE ON user_audit "
        "FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change()"
    )
    op.execute("DROP FUNCTION user_audit_append_only()")
    op.execute(_revision("0007_entry_seals_and_linking_after_commit.py").SAFETY_NET_AT_COMMIT)
    op.drop_constraint(op.f("ck_user_audit_operation_known"), "user_audit", type_="check")
    op.create_check_constraint(
        "operation_known", "user_audit", "operation in ('create', 'update', 'delete', 'restore')"
    )
    op.drop_index("uq_users_email_index_active", table_name="users")
    op.drop_column("users", "erased_at")
    op.drop_column("users", "email_index")
    op.drop_index("ix_profile_data_keys_master_key_id", table_name="profile_data_keys")
    op.drop_table("profile_data_keys")
