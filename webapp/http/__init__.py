"""What every face of the app shares at the HTTP level: the problem+json error
format and the rule for which requests belong to the JSON API.

The API, bearer authentication, the error handlers and ``/metrics`` all use
them, so they belong to none of those; nothing here imports the rest of the app.
"""
