"""Tests for dbsal_backend.labelstudio.images: which images are fetched, how, within which limits.

Every test talks to small HTTP servers on 127.0.0.1 started here: one plays Label Studio, one an
allowed image host, one a host that is not allowed. Each server logs the requests it received,
so the tests can check that a refused URL was never requested and where the API key went.
"""

import base64
import hashlib
import http.server
import io
import threading
import time
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from dbsal_backend.labelstudio.images import (
    CLOUD_SCHEMES,
    MAX_REDIRECTS,
    ImageFetchError,
    ImageFetcher,
    decode_image,
    origin,
    prefetch,
)


def png(width=6, height=4, colour=(200, 30, 40), mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour if mode == "RGB" else 0).save(buffer, "PNG")
    return buffer.getvalue()


PNG = png()


class Server:
    """A tiny HTTP/1.0 server: ``routes[path](handler)`` answers; every request is logged."""

    def __init__(self):
        self.routes = {}
        self.requests = []  # (path with query, headers as a dict)
        self.sent = 0  # body bytes written by streaming routes
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(urlsplit(self.path).path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self):
        return [path for path, _ in self.requests]


def body(data, status=200, headers=()):
    def route(handler):
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    return route


def redirect(location, status=302):
    def route(handler):
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return route


@pytest.fixture
def ls():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def cdn():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def evil():
    server = Server()
    yield server
    server.close()


class Auth:
    """``auth_header(renew)``: an old token, a new one after a renewal; calls are logged."""

    def __init__(self):
        self.calls = []

    def __call__(self, renew):
        self.calls.append(renew)
        return {"Authorization": "Token new" if renew else "Token old"}


@pytest.fixture
def auth():
    return Auth()


@pytest.fixture
def fetcher(ls, cdn, auth):
    fetcher = ImageFetcher(ls.url, auth, allowed_origins=[cdn.url], timeout=2.0)
    yield fetcher
    fetcher.close()


def task(url, task_id=1):
    return {"id": task_id, "data": {"image": url}}


def test_origin_is_normalised():
    assert origin("HTTP://Example.ORG/a/b?c") == "http://example.org:80"
    assert origin("https://example.org") == "https://example.org:443"
    assert origin("http://example.org:8080/x") == "http://example.org:8080"
    assert origin("http://user:pw@example.org/x") == "http://example.org:80"
    assert origin("http://[::1]:9000/x") == "http://::1:9000"


# ---------------------------------------------------------------- which URLs


def test_images_from_label_studio_and_allowed_origins_are_fetched(fetcher, ls, cdn):
    ls.routes["/data/upload/1/a.png"] = body(PNG)
    cdn.routes["/b.png"] = body(png(3, 5))
    image = fetcher.load(task("/data/upload/1/a.png"), "image")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (200, 30, 40)
    assert fetcher.load(task(cdn.url + "/b.png"), "image").shape == (5, 3, 3)
    assert ls.paths() == ["/data/upload/1/a.png"] and cdn.paths() == ["/b.png"]


def test_other_origins_are_refused_without_a_request(fetcher, evil):
    evil.routes["/x.png"] = body(PNG)
    for url in (evil.url + "/x.png", evil.url.replace("127.0.0.1", "localhost") + "/x.png"):
        with pytest.raises(ImageFetchError, match="DBSAL_ALLOWED_IMAGE_ORIGINS") as info:
            fetcher.load(task(url), "image")
        assert info.value.status_code == 403
    assert evil.requests == []


def test_same_host_other_port_or_scheme_is_another_origin(ls, auth):
    fetcher = ImageFetcher(ls.url, auth, allowed_origins=["https://127.0.0.1"])
    port = int(ls.url.rsplit(":", 1)[1])
    for url in (f"http://127.0.0.1:{port + 1}/a.png", f"https://127.0.0.1:{port}/a.png",
                "http://127.0.0.1/a.png"):
        with pytest.raises(ImageFetchError, match="refusing"):
            fetcher.download(url)
    fetcher.close()


@pytest.mark.parametrize("data, match", [
    ({"id": 1, "data": {}}, "no image URL"),
    ({"id": 1, "data": {"image": ""}}, "no image URL"),
    ({"id": 1, "data": {"image": 42}}, "no image URL"),
    ({"id": 1}, "no image URL"),
    ("not a task", "no image URL"),
    ({"id": 1, "data": {"image": "ftp://host/a.png"}}, "cannot download"),
    ({"id": 1, "data": {"image": "file:///etc/passwd"}}, "cannot download"),
    ({"id": 1, "data": {"image": "//evil.example/a.png"}}, "cannot download"),
    ({"id": 1, "data": {"image": "a.png"}}, "cannot download"),
    ({"data": {"image": "s3://bucket/a.png"}}, "without a task id"),
    ({"id": True, "data": {"image": "s3://bucket/a.png"}}, "without a task id"),
])
def test_urls_that_cannot_be_resolved(fetcher, data, match):
    with pytest.raises(ImageFetchError, match=match):
        fetcher.url(data, "image")


def test_server_paths_resolve_against_label_studio(fetcher, ls):
    assert fetcher.url(task("/data/upload/3/x.png"), "image") == ls.url + "/data/upload/3/x.png"
    assert fetcher.url(task("  /data/x.png "), "image") == ls.url + "/data/x.png"
    prefixed = ImageFetcher(ls.url + "/ls/", Auth())
    assert prefixed.url(task("/data/x.png"), "image") == ls.url + "/ls/data/x.png"
    prefixed.close()


@pytest.mark.parametrize("scheme", CLOUD_SCHEMES)
def test_cloud_uris_go_through_the_label_studio_resolver(fetcher, ls, scheme):
    uri = f"{scheme}://bucket/dir/key with spaces.png"
    url = fetcher.url(task(uri, task_id=42), "image")
    prefix = ls.url + "/tasks/42/resolve/?fileuri="
    assert url.startswith(prefix)
    encoded = url[len(prefix):]
    assert base64.urlsafe_b64decode(encoded).decode() == uri
    assert "+" not in encoded and "/" not in encoded


def test_a_cloud_image_is_streamed_or_redirected_by_label_studio(fetcher, ls, cdn, auth):
    def resolve(handler):
        uri = base64.urlsafe_b64decode(parse_qs(urlsplit(handler.path).query)["fileuri"][0])
        if uri.decode().endswith("direct.png"):
            body(PNG)(handler)
        else:  # a presigned URL on the (allowed) storage host
            redirect(cdn.url + "/signed.png?sig=abc")(handler)

    ls.routes["/tasks/7/resolve/"] = resolve
    cdn.routes["/signed.png"] = body(png(2, 2))
    assert fetcher.load(task("s3://b/direct.png", 7), "image").shape == (4, 6, 3)
    assert fetcher.load(task("gs://b/other.png", 7), "image").shape == (2, 2, 3)
    assert cdn.paths() == ["/signed.png?sig=abc"]


# ---------------------------------------------------------------- redirects and the key


def test_the_key_goes_to_label_studio_only(fetcher, ls, cdn, auth):
    ls.routes["/a.png"] = body(PNG)
    cdn.routes["/b.png"] = body(PNG)
    fetcher.load(task("/a.png"), "image")
    fetcher.load(task(cdn.url + "/b.png"), "image")
    assert ls.requests[0][1].get("Authorization") == "Token old"
    assert "Authorization" not in cdn.requests[0][1]
    assert auth.calls == [False]


def test_a_redirect_to_an_allowed_origin_is_followed_without_the_key(fetcher, ls, cdn):
    ls.routes["/moved.png"] = redirect(cdn.url + "/b.png", 307)
    cdn.routes["/b.png"] = body(PNG)
    assert fetcher.load(task("/moved.png"), "image").shape == (4, 6, 3)
    assert ls.requests[0][1].get("Authorization") == "Token old"
    assert "Authorization" not in cdn.requests[0][1]


def test_a_redirect_to_another_origin_is_refused(fetcher, ls, cdn, evil):
    evil.routes["/x.png"] = body(PNG)
    ls.routes["/to-evil.png"] = redirect(evil.url + "/x.png")
    cdn.routes["/to-evil.png"] = redirect(evil.url + "/x.png", 301)
    for url in ("/to-evil.png", cdn.url + "/to-evil.png"):
        with pytest.raises(ImageFetchError, match="refusing"):
            fetcher.load(task(url), "image")
    assert evil.requests == []


def test_relative_redirects_and_a_way_back_to_label_studio(fetcher, ls, cdn):
    ls.routes["/old.png"] = redirect("/new.png", 308)
    ls.routes["/new.png"] = body(PNG)
    cdn.routes["/back.png"] = redirect(ls.url + "/new.png", 303)
    assert fetcher.load(task("/old.png"), "image").shape == (4, 6, 3)
    assert fetcher.load(task(cdn.url + "/back.png"), "image").shape == (4, 6, 3)
    assert ls.paths() == ["/old.png", "/new.png", "/new.png"]
    assert all(headers.get("Authorization") == "Token old" for _, headers in ls.requests)


def test_too_many_redirects(fetcher, ls):
    ls.routes["/loop.png"] = redirect("/loop.png")
    with pytest.raises(ImageFetchError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetcher.load(task("/loop.png"), "image")
    assert len(ls.requests) == MAX_REDIRECTS + 1


def test_a_401_from_label_studio_renews_the_key_once(fetcher, ls, auth):
    def guarded(handler):
        if handler.headers.get("Authorization") == "Token new":
            body(PNG)(handler)
        else:
            body(b"no", status=401)(handler)

    ls.routes["/a.png"] = guarded
    assert fetcher.load(task("/a.png"), "image").shape == (4, 6, 3)
    assert auth.calls == [False, True]
    assert [h.get("Authorization") for _, h in ls.requests] == ["Token old", "Token new"]


def test_a_401_after_the_renewal_is_an_error(fetcher, ls, cdn, auth):
    ls.routes["/a.png"] = body(b"no", status=401)
    with pytest.raises(ImageFetchError, match="401") as info:
        fetcher.load(task("/a.png"), "image")
    assert info.value.status_code == 401 and len(ls.requests) == 2
    cdn.routes["/b.png"] = body(b"no", status=401)  # elsewhere: no key to renew
    with pytest.raises(ImageFetchError, match="401"):
        fetcher.load(task(cdn.url + "/b.png"), "image")
    assert len(cdn.requests) == 1 and auth.calls == [False, True]


def test_cookies_set_by_label_studio_are_not_sent_elsewhere(fetcher, ls, cdn):
    def to_cdn(handler):
        handler.send_response(302)
        handler.send_header("Location", cdn.url + "/b.png")
        handler.send_header("Set-Cookie", "sessionid=secret2")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    ls.routes["/a.png"] = body(PNG, headers=[("Set-Cookie", "sessionid=secret")])
    ls.routes["/to-cdn.png"] = to_cdn
    cdn.routes["/b.png"] = body(PNG)
    fetcher.load(task("/a.png"), "image")
    fetcher.load(task("/to-cdn.png"), "image")
    fetcher.load(task(cdn.url + "/b.png?again"), "image")
    assert len(cdn.requests) == 2
    assert all("Cookie" not in headers for _, headers in cdn.requests)


@pytest.mark.parametrize("status", [404, 500, 302])
def test_other_answers_are_errors(fetcher, ls, status):
    ls.routes["/a.png"] = body(b"", status=status)  # a 302 without a Location included
    with pytest.raises(ImageFetchError, match=f"HTTP {status}") as info:
        fetcher.load(task("/a.png"), "image")
    assert info.value.status_code == status


def test_an_unreachable_host_is_an_error(ls, auth):
    probe = Server()
    dead = probe.url
    probe.close()
    fetcher = ImageFetcher(ls.url, auth, allowed_origins=[dead], timeout=2.0)
    with pytest.raises(ImageFetchError, match="failed"):
        fetcher.load(task(dead + "/a.png"), "image")
    fetcher.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/a.png", "http://127.0.0.1:port/a.png",
                                 "http://[::1/a.png"])
def test_malformed_urls_are_image_fetch_errors(fetcher, ls, url):
    with pytest.raises(ImageFetchError):
        fetcher.load(task(url), "image")
    ls.routes["/bad-redirect.png"] = redirect(url)
    with pytest.raises(ImageFetchError):
        fetcher.load(task("/bad-redirect.png"), "image")


# ---------------------------------------------------------------- limits


def test_a_declared_size_above_the_cap_is_refused_before_reading(ls, auth):
    def huge(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(10**10))
        handler.end_headers()
        handler.wfile.write(b"x" * 1000)
        time.sleep(10)  # never sends the rest

    ls.routes["/huge.png"] = huge
    fetcher = ImageFetcher(ls.url, auth, max_bytes=10_000, timeout=10.0)
    start = time.monotonic()
    with pytest.raises(ImageFetchError, match="DBSAL_MAX_IMAGE_BYTES=10000"):
        fetcher.load(task("/huge.png"), "image")
    assert time.monotonic() - start < 5  # refused without waiting for the stalled body
    fetcher.close()


def test_an_undeclared_size_above_the_cap_is_cut_off(ls, auth):
    total = 64 * 2**20

    def stream(handler):  # HTTP/1.0 without Content-Length: the body ends when the socket does
        handler.send_response(200)
        handler.end_headers()
        chunk = b"\0" * 65536
        try:
            while ls.sent < total:
                handler.wfile.write(chunk)
                ls.sent += len(chunk)
        except OSError:
            pass  # the client hung up

    ls.routes["/endless.png"] = stream
    fetcher = ImageFetcher(ls.url, auth, max_bytes=200_000, timeout=10.0)
    with pytest.raises(ImageFetchError, match="DBSAL_MAX_IMAGE_BYTES=200000"):
        fetcher.load(task("/endless.png"), "image")
    fetcher.close()
    time.sleep(0.2)
    assert ls.sent < total // 4  # the client stopped reading long before the end


def test_a_body_at_the_cap_is_fine(ls, auth):
    ls.routes["/a.png"] = body(PNG)
    fetcher = ImageFetcher(ls.url, auth, max_bytes=len(PNG))
    assert fetcher.load(task("/a.png"), "image").shape == (4, 6, 3)
    fetcher.close()


def test_a_trickling_server_is_cut_off_at_the_deadline(ls, auth):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        try:
            for _ in range(400):  # 20 s for 400 bytes
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    ls.routes["/slow.png"] = trickle
    fetcher = ImageFetcher(ls.url, auth, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ImageFetchError, match="DBSAL_IMAGE_TIMEOUT=1 s|timed out|Timeout"):
        fetcher.load(task("/slow.png"), "image")
    assert 0.9 < time.monotonic() - start < 10  # at the deadline, long before the body ends
    fetcher.close()


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline(ls, auth):
    def trickle(handler):
        try:
            handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
            for i in range(60):  # 15 s of headers
                handler.wfile.write(b"X-Pad-%d: x\r\n" % i)
                handler.wfile.flush()
                time.sleep(0.25)
            handler.wfile.write(b"Content-Length: 0\r\n\r\n")
        except OSError:
            pass

    ls.routes["/slow.png"] = trickle
    fetcher = ImageFetcher(ls.url, auth, timeout=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(ImageFetchError):
            fetcher.load(task("/slow.png"), "image")
        assert time.monotonic() - start < 7.5  # long before the headers end
    finally:
        fetcher.close()


def test_a_silent_server_is_cut_off_at_the_deadline(ls, auth):
    ls.routes["/silent.png"] = lambda handler: time.sleep(15)
    fetcher = ImageFetcher(ls.url, auth, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ImageFetchError):
        fetcher.load(task("/silent.png"), "image")
    assert time.monotonic() - start < 7.5  # long before the server answers
    fetcher.close()


def test_the_pixel_count_is_checked_before_decoding(fetcher, ls):
    bomb = png(9000, 9000, mode="1")  # a few kB that would decode to 81 million pixels
    assert len(bomb) < 50_000
    ls.routes["/bomb.png"] = body(bomb)
    with pytest.raises(ImageFetchError, match="9000x9000 = 81000000 pixels"):
        fetcher.load(task("/bomb.png"), "image")
    small = ImageFetcher(ls.url, Auth(), max_pixels=23)
    ls.routes["/a.png"] = body(PNG)  # 24 pixels
    with pytest.raises(ImageFetchError, match="DBSAL_MAX_IMAGE_PIXELS=23"):
        small.load(task("/a.png"), "image")
    small.close()


def test_decode_image():
    grey = io.BytesIO()
    Image.new("L", (3, 2), 90).save(grey, "PNG")
    image = decode_image(grey.getvalue(), "grey", 100)
    assert image.shape == (2, 3, 3) and (image == 90).all()
    # The EXIF orientation is applied: a 4x2 image stored with "rotate 90" reads as 2x4.
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (4, 2)).save(rotated, "JPEG", exif=exif.tobytes())
    assert decode_image(rotated.getvalue(), "jpeg", 100).shape == (4, 2, 3)
    for data in (b"", b"not an image", PNG[:30]):
        with pytest.raises(ImageFetchError, match="not a readable image"):
            decode_image(data, "junk", 100)


def test_bytes_that_are_not_an_image_are_an_error_and_not_cached(ls, auth, tmp_path):
    ls.routes["/a.png"] = body(b"<html>login</html>")
    fetcher = ImageFetcher(ls.url, auth, cache_dir=tmp_path)
    with pytest.raises(ImageFetchError, match="not a readable image"):
        fetcher.load(task("/a.png"), "image")
    assert list(tmp_path.iterdir()) == []
    ls.routes["/a.png"] = body(PNG)  # fixed on the server: fetched again
    assert fetcher.load(task("/a.png"), "image").shape == (4, 6, 3)
    assert len(ls.requests) == 2
    fetcher.close()


# ---------------------------------------------------------------- cache


def test_the_disk_cache_keeps_downloads(ls, auth, tmp_path):
    ls.routes["/a.png"] = body(PNG)
    fetcher = ImageFetcher(ls.url, auth, cache_dir=tmp_path / "cache")
    assert fetcher.cache_problem is None
    first = fetcher.load(task("/a.png"), "image")
    key = hashlib.sha256((ls.url + "/a.png").encode()).hexdigest()
    assert (tmp_path / "cache" / key).read_bytes() == PNG
    fetcher.close()
    again = ImageFetcher(ls.url, auth, cache_dir=tmp_path / "cache")  # survives a restart
    np.testing.assert_array_equal(again.load(task("/a.png"), "image"), first)
    assert len(ls.requests) == 1
    again.close()


def test_an_unwritable_cache_folder_falls_back_to_memory(ls, auth, tmp_path):
    (tmp_path / "file").write_bytes(b"")
    ls.routes["/a.png"] = body(PNG)
    fetcher = ImageFetcher(ls.url, auth, cache_dir=tmp_path / "file" / "cache")
    assert fetcher.cache_problem and "not writable" in fetcher.cache_problem
    assert "memory" in fetcher.cache_problem
    for _ in range(3):
        assert fetcher.load(task("/a.png"), "image").shape == (4, 6, 3)
    assert len(ls.requests) == 1
    fetcher.close()


def test_a_cache_folder_that_breaks_later_falls_back_to_memory(ls, auth, tmp_path):
    ls.routes["/a.png"] = body(PNG)
    ls.routes["/b.png"] = body(png(2, 2))
    cache = tmp_path / "cache"
    fetcher = ImageFetcher(ls.url, auth, cache_dir=cache)
    fetcher.load(task("/a.png"), "image")
    for path in cache.iterdir():
        path.unlink()
    cache.rmdir()
    cache.write_bytes(b"")  # the folder is gone: writes fail from now on
    assert fetcher.load(task("/b.png"), "image").shape == (2, 2, 3)
    assert fetcher.cache_problem and "memory" in fetcher.cache_problem
    fetcher.load(task("/b.png"), "image")
    assert ls.paths() == ["/a.png", "/b.png"]
    fetcher.close()


def test_without_a_cache_folder_a_few_images_stay_in_memory(fetcher, ls):
    ls.routes["/a.png"] = body(PNG)
    fetcher.load(task("/a.png"), "image")
    fetcher.load(task("/a.png"), "image")
    assert len(ls.requests) == 1 and fetcher.cache_problem is None


# ---------------------------------------------------------------- prefetch


def _loader(delays, failing=()):
    started = []

    def load(item):
        started.append(item)
        time.sleep(delays.get(item, 0.0))
        if item in failing:
            raise ImageFetchError(f"item {item} is broken")
        return np.full((1, 1, 3), item, np.uint8)

    return load, started


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_prefetch_keeps_the_order_and_skips_failures(workers):
    load, _ = _loader({0: 0.15, 1: 0.0, 2: 0.1, 5: 0.05}, failing={3, 4})
    errors = []
    out = list(prefetch(range(7), load, workers, lambda item, exc: errors.append((item, str(exc)))))
    assert [item for item, _ in out] == [0, 1, 2, 5, 6]
    assert all(int(image[0, 0, 0]) == item for item, image in out)
    assert errors == [(3, "item 3 is broken"), (4, "item 4 is broken")]


def test_prefetch_without_workers_loads_in_this_thread():
    threads = set()

    def load(item):
        threads.add(threading.get_ident())
        return np.zeros((1, 1, 3), np.uint8)

    assert len(list(prefetch(range(3), load, 0, lambda *a: None))) == 3
    assert threads == {threading.get_ident()}


def test_prefetch_runs_at_most_workers_loads_ahead():
    load, started = _loader({})
    items = prefetch(range(20), load, 2, lambda *a: None)
    for consumed, (item, _) in enumerate(items, start=1):
        time.sleep(0.01)
        assert len(started) <= consumed + 2


def test_prefetch_lets_other_errors_through():
    def load(item):
        if item == 1:
            raise KeyError("a bug, not a bad image")
        return np.zeros((1, 1, 3), np.uint8)

    for workers in (0, 2):
        with pytest.raises(KeyError):
            list(prefetch(range(3), load, workers, lambda *a: None))
