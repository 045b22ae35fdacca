"""Change capture for audited models.

``capture`` holds the session listeners that write one ``user_audit`` row per
change in the same transaction as the change; ``snapshot`` turns a profile into
the JSON stored on that row; ``context`` carries the why (and later the who) of
the change in progress without any knowledge of HTTP.
"""
