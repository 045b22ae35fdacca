"""Business operations. The only code that changes data; blueprints call these."""
