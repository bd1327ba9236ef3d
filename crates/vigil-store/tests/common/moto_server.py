"""moto's S3 server with conditional PUTs made atomic, as S3 makes them.

moto checks `If-None-Match: *` and then stores the object in two steps, on a threaded server:
two PUTs of one key racing can both pass the check. Delta commits rely on exactly that check
(the second writer of a version must get 412), so the tests run moto with object PUTs taking
one lock. Usage: python moto_server.py [moto.server arguments]
"""
import threading

from moto.s3.responses import S3Response
from moto.server import main

_lock = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self, *args, **kwargs):
    with _lock:
        return _put_object(self, *args, **kwargs)


S3Response.put_object = _atomic_put_object

if __name__ == "__main__":
    main()
