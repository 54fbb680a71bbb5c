# The fetcher interface: the update flow asks a fetcher for bytes and never learns whether they
# come over HTTPS, from a file, a UART or a gateway (python-tuf's FetcherInterface, reduced).
#
#   fetcher.open(url, offset=0, max_length=N, etag=None) -> body
#       body.readinto(buf) -> n         n == 0 only at the end of the body
#       body.close()
#       body.offset  first byte served: == offset when the source resumed, 0 when it restarted
#       body.total   the full length of the artifact if known, else None
#       body.etag    an identity of the artifact's content if the source has one, else None
#   A source that serves more than max_length bytes in total is an error (OTAError "too_long"):
#   every download has a maximum length.
#
#   fetch_bytes(fetcher, url, max_length) -> bytes   for small documents (manifests).
from .errors import OTAError


def fetch_bytes(fetcher, url, max_length):
    body = fetcher.open(url, 0, max_length)
    try:
        if body.total is not None and body.total > max_length:
            raise OTAError("too_long", "%s is %d bytes, more than the %d allowed" % (url, body.total, max_length))
        # A buffer of the announced size when there is one (manifests are ~1 KB: no 8 KB
        # contiguous allocation in a fragmented heap), one byte more to notice a longer body.
        cap = body.total if body.total is not None else max_length
        buf = bytearray(cap + 1)
        mv = memoryview(buf)
        got = 0
        while got <= cap:
            n = body.readinto(mv[got:])
            if not n:
                break
            got += n
        if got > cap:
            raise OTAError("too_long", "%s is longer than %d bytes" % (url, cap))
        return bytes(mv[:got])
    finally:
        body.close()


class FileBody:
    def __init__(self, f, offset, total, max_length):
        self._f = f
        self.offset = offset
        self.total = total
        self.etag = None
        self._left = max_length - offset if max_length is not None else None

    def readinto(self, buf):
        n = self._f.readinto(buf)
        if n and self._left is not None:
            self._left -= n
            if self._left < 0:
                raise OTAError("too_long", "source is longer than its declared maximum length")
        return n or 0

    def close(self):
        self._f.close()


class FileFetcher:
    """Artifacts from a local folder (an SD card, a file pushed over the REPL, tests)."""

    def __init__(self, root=""):
        self.root = root

    def open(self, url, offset=0, max_length=None, etag=None):
        import os

        path = url if url.startswith("/") or not self.root else self.root + "/" + url
        try:
            total = os.stat(path)[6]
            f = open(path, "rb")
        except OSError as e:
            raise OTAError("not_found", "cannot open %s: %s" % (path, e))
        if offset:
            f.seek(offset)
        return FileBody(f, offset, total, max_length)


def resolve(base, ref):
    """The location of `ref` (an artifact URL in a manifest) relative to the manifest's `base`."""
    if "://" in ref or ref.startswith("/"):
        if "://" in base and ref.startswith("/") and "://" not in ref:
            from .http import resolve_url

            return resolve_url(base, ref)
        return ref
    if "://" in base:
        from .http import resolve_url

        return resolve_url(base, ref)
    i = base.rfind("/")
    return ref if i < 0 else base[:i + 1] + ref
