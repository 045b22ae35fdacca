# `flask` commands use the app from this factory; they need DATABASE_URL.
FLASK_APP=webapp.cli:create_cli_app()
