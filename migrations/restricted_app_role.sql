-- The stronger setup: the application connects as a role that may only INSERT
-- and SELECT audit records, so not even a bug or a stolen app credential can
-- change history. Run as the owner of the tables (the role that runs the
-- migrations), after `flask db upgrade`; then set a password and point the
-- app's DATABASE_URL at this role, keeping the owner's URL for migrations:
--   ALTER ROLE profile_audit_app PASSWORD '...';
DO $$
BEGIN
    CREATE ROLE profile_audit_app LOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- already there: only the grants below are (re)applied
END
$$;

GRANT USAGE ON SCHEMA public TO profile_audit_app;
-- History: written and read, never changed.
GRANT SELECT, INSERT ON user_audit, security_events, audit_chain, audit_verifications
    TO profile_audit_app;
-- The chain's head moves forward with every append (a trigger refuses going back);
-- entries the safety net queues are taken off the queue when sealed.
GRANT SELECT, UPDATE ON audit_chain_head TO profile_audit_app;
-- The sealer encrypts and seals the entries the safety net wrote in clear,
-- before linking them: those three columns only, and the table's trigger lets
-- nothing else through (an unsealed, unlinked safety-net entry, sealed once).
GRANT UPDATE (previous_data, new_data, seal) ON user_audit TO profile_audit_app;
-- Each profile's data key: made with it, destroyed (nulled) by its erasure.
GRANT SELECT, INSERT, UPDATE ON profile_data_keys TO profile_audit_app;
GRANT SELECT, INSERT, DELETE ON audit_chain_pending TO profile_audit_app;
-- Repeated security events count up (a trigger refuses counting down); never deleted.
GRANT SELECT, INSERT, UPDATE ON security_event_repeats TO profile_audit_app;
-- Current state: profiles are soft-deleted, accounts deactivated, tokens revoked.
GRANT SELECT, INSERT, UPDATE ON users, staff, api_tokens TO profile_audit_app;
-- Dashboard sessions are ended by update; an account's long-over ones are deleted.
GRANT SELECT, INSERT, UPDATE, DELETE ON staff_sessions TO profile_audit_app;
-- The sign-in throttle's attempts are settled by update, deleted once they no longer count.
GRANT SELECT, INSERT, UPDATE, DELETE ON sign_in_attempts TO profile_audit_app;
GRANT SELECT ON alembic_version TO profile_audit_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO profile_audit_app;
