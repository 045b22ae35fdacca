"""What the tests share: the database as an auditor reads it, staff accounts
and tokens, profiles made through the API, the dashboard's forms, and the
``flask`` command, in-process and as a subprocess.

Fixtures built on these are in ``tests/conftest.py``; test files import the
plain helpers from here and define none of their own for these jobs.
"""
