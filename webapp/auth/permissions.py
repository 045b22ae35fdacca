"""What each role may do. The server checks these on every route and endpoint."""

from __future__ import annotations

PROFILES_READ = "profiles:read"
PROFILES_WRITE = "profiles:write"
HISTORY_READ = "history:read"
AUDIT_READ = "audit:read"
SECURITY_EVENTS_READ = "security_events:read"
STAFF_MANAGE = "staff:manage"
#: Erase a profile's personal data for good (its data key is destroyed).
PERSONAL_DATA_ERASE = "personal_data:erase"
#: Read everything held about one profile, its history decrypted, in one document.
PERSONAL_DATA_READ = "personal_data:read"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            PROFILES_READ,
            PROFILES_WRITE,
            HISTORY_READ,
            AUDIT_READ,
            SECURITY_EVENTS_READ,
            STAFF_MANAGE,
            PERSONAL_DATA_ERASE,
            PERSONAL_DATA_READ,
        }
    ),
    # Support staff edit profiles and see a profile's history, not the whole log.
    "support": frozenset({PROFILES_READ, PROFILES_WRITE, HISTORY_READ}),
    # Auditors read everything and never write profiles.
    "auditor": frozenset(
        {PROFILES_READ, HISTORY_READ, AUDIT_READ, SECURITY_EVENTS_READ, PERSONAL_DATA_READ}
    ),
}


def role_allows(role: str, permission: str) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
