"""moto's S3 server as `moto_server` starts it, with one change: requests that carry a
condition (If-Match, If-None-Match) are handled one at a time.

moto checks a condition and then writes, in two steps, on one thread per request, so two
conditional writes of a key at once can both pass; S3 checks and writes atomically, and
the storage suite's conditional races and counter test exactly that. Serialising the
conditional requests gives them S3's atomicity; every other request runs as moto runs it.

Usage: python testing/moto_server.py HOST PORT
"""
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)
conditional = threading.Lock()


def serialized(environ, start_response):
    if environ.get("HTTP_IF_MATCH") or environ.get("HTTP_IF_NONE_MATCH"):
        with conditional:
            return list(app(environ, start_response))
    return app(environ, start_response)


run_simple(host, port, serialized, threaded=True)
