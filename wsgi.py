"""WSGI entry point: ``gunicorn wsgi:app``.

The app refuses to start when its master keys do not open the data keys in
the database (``webapp.services.master_keys``): gunicorn loads this module in
its master (``preload_app``), so a wrong key stops the server before any
worker serves a page.
"""

from webapp import create_app
from webapp.services.master_keys import refuse_wrong_master_keys

app = create_app()
refuse_wrong_master_keys(app)
