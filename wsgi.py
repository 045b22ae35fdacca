"""WSGI entry point: ``gunicorn wsgi:app``.

The app refuses to start when its master keys do not open the data keys in
the database (``webapp.services.master_keys``): gunicorn loads this module in
its master (``preload_app``), so a wrong key stops the server before any
worker serves a page. So does a database it cannot reach to check them with.
"""

from webapp import create_app
from webapp.services.master_keys import exit_unless_master_keys_open

app = create_app()
exit_unless_master_keys_open(app)
