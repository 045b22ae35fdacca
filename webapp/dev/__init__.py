"""For working on the app, never for serving it: ``make run``'s server and the
embedded PostgreSQL that it and the tests start.

Left out of the production image and the wheel: nothing outside this package
imports it, and a deployment always names its database in ``DATABASE_URL``.
"""
