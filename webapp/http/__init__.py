"""What every face of the app shares at the HTTP level: the problem+json error format.

The JSON API, bearer authentication, the error handlers and ``/metrics`` all
answer in it, so it belongs to none of them.
"""
