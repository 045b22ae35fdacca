"""A database safety net under the ORM audit capture.

Writes to ``users`` that bypass the application's unit of work (ORM bulk or
Core statements, psql, another program) still get an audit entry, written by
a trigger and flagged ``unattributed``. Writes the application's flush already
records are recognised by a transaction-local setting the flush raises while
it runs, so they are never recorded twice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "user_audit",
        sa.Column("unattributed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    # The same snapshot the application writes: ISO 8601 UTC with microseconds.
    op.execute(
        """
        CREATE FUNCTION profile_snapshot(profile users) RETURNS jsonb
        LANGUAGE sql STABLE AS $$
            SELECT jsonb_build_object(
                'name', profile.name,
                'email', profile.email,
                'deleted_at', to_char(profile.deleted_at AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            )
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION users_audit_safety_net() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            previous jsonb;
            current jsonb := profile_snapshot(NEW);
            fields text[];
            operation text;
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
                 unattributed)
            VALUES (NEW.id, operation, previous, current, fields, NEW.version, true);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER users_audit_safety_net AFTER INSERT OR UPDATE ON users "
        "FOR EACH ROW EXECUTE FUNCTION users_audit_safety_net()"
    )
    op.create_index(
        "ix_user_audit_unattributed_timestamp_id",
        "user_audit",
        ["timestamp", "id"],
        postgresql_where=sa.text("unattributed"),
    )


def downgrade():
    op.drop_index("ix_user_audit_unattributed_timestamp_id", table_name="user_audit")
    op.execute("DROP TRIGGER users_audit_safety_net ON users")
    op.execute("DROP FUNCTION users_audit_safety_net()")
    op.execute("DROP FUNCTION profile_snapshot(users)")
    op.drop_column("user_audit", "unattributed")
