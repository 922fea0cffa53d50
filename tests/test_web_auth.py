"""Basic auth at exporter-toolkit's level (issue 11, item 5): cached successes, one bcrypt at a
time, the same work for every failure, passwords over 72 bytes refused cleanly.

bcrypt.checkpw is wrapped (the real one still runs) only to count and time the calls."""

import base64
import threading

import bcrypt
import pytest

from minerwatch.serving import web
from minerwatch.serving.web_auth import BasicAuth
from test_web_http import get, in_threads, serving, stop

REAL_CHECKPW = bcrypt.checkpw


class CheckSpy:
    """Records each bcrypt check (the hash it used) and the most that ran at once."""

    def __init__(self, hold: threading.Event = None):
        self.hashes = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.hold = hold

    def __call__(self, password, hashed):
        with self.lock:
            self.hashes.append(hashed)
            self.running += 1
            self.most = max(self.most, self.running)
        self.entered.set()
        try:
            if self.hold is not None:
                self.hold.wait(10)
            return REAL_CHECKPW(password, hashed)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def spy(monkeypatch):
    s = CheckSpy()
    monkeypatch.setattr(bcrypt, "checkpw", s)
    return s


def basic(user: str, password) -> dict:
    raw = user.encode() + b":" + (password if isinstance(password, bytes) else password.encode())
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def hashed(password: bytes, cost: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost))


def auth_server(tmp_path, users: dict):
    cfg = tmp_path / "web.yml"
    cfg.write_text("basic_auth_users:\n" + "".join(f"  {u}: '{h.decode()}'\n" for u, h in users.items()))
    return serving(web.load_web_config(str(cfg)))


def test_successful_checks_are_cached(tmp_path, spy):
    server = auth_server(tmp_path, {"prometheus": hashed(b"s3cret", 6)})
    try:
        assert [get(server, headers=basic("prometheus", "s3cret"))[0] for _ in range(20)] == [200] * 20
        assert len(spy.hashes) == 1
        assert get(server, headers=basic("prometheus", "wrong"))[0] == 401  # the cache holds only successes
        assert len(spy.hashes) == 2
    finally:
        stop(server)


def test_one_bcrypt_at_a_time(tmp_path, spy):
    server = auth_server(tmp_path, {"prometheus": hashed(b"s3cret", 9)})
    try:
        threads, results = in_threads(6, lambda: get(server, headers=basic("prometheus", "guess")))
        for t in threads:
            t.join(20)
        assert [r[0] for r in results] == [401] * 6
        assert len(spy.hashes) == 6 and spy.most == 1
    finally:
        stop(server)


def test_every_failure_costs_one_bcrypt_at_the_configured_cost(tmp_path, spy):
    users = {"alice": hashed(b"a", 5), "bob": hashed(b"b", 5)}
    server = auth_server(tmp_path, users)
    try:
        assert get(server)[0] == 401 and spy.hashes == []  # no credentials, nothing to check
        for user in ("mallory", "alice", "bob", "prometheus"):
            spy.hashes.clear()
            assert get(server, headers=basic(user, "guess"))[0] == 401
            assert len(spy.hashes) == 1 and spy.hashes[0][:7] == b"$2b$05$", user
    finally:
        stop(server)


def test_password_over_72_bytes_is_refused_cleanly(tmp_path, spy):
    password = b"p" * 72
    server = auth_server(tmp_path, {"prometheus": hashed(password, 5)})
    try:
        assert get(server, headers=basic("prometheus", password))[0] == 200
        spy.hashes.clear()
        # bcrypt reads 72 bytes only: a longer password must not pass by its first 72, nor crash
        assert get(server, headers=basic("prometheus", password + b"x"))[0] == 401
        assert get(server, headers=basic("prometheus", "é" * 100))[0] == 401
        assert len(spy.hashes) == 2
        assert get(server, headers=basic("prometheus", password))[0] == 200
    finally:
        stop(server)


def test_failures_cannot_evict_cached_successes(spy):
    auth = BasicAuth({"prometheus": hashed(b"right", 4)}, cache_size=2)
    assert auth.check("prometheus", b"right") is True
    for i in range(10):
        assert auth.check("prometheus", b"wrong%d" % i) is False
        assert auth.check("stranger%d" % i, b"right") is False
    spy.hashes.clear()
    assert auth.check("prometheus", b"right") is True and spy.hashes == []


def test_success_cache_is_bounded(spy):
    users = {f"user{i}": hashed(b"pw", 4) for i in range(3)}
    auth = BasicAuth(users, cache_size=2)
    for user in users:
        assert auth.check(user, b"pw") is True
    spy.hashes.clear()
    assert auth.check("user2", b"pw") and auth.check("user1", b"pw") and spy.hashes == []
    assert auth.check("user0", b"pw") and len(spy.hashes) == 1  # evicted, checked again


def test_a_check_that_cannot_get_its_turn_is_answered_busy(monkeypatch):
    release = threading.Event()
    spy = CheckSpy(hold=release)
    monkeypatch.setattr(bcrypt, "checkpw", spy)
    auth = BasicAuth({"prometheus": hashed(b"pw", 4)}, lock_wait=0.1)
    first = threading.Thread(target=auth.check, args=("prometheus", b"guess"), daemon=True)
    first.start()
    try:
        assert spy.entered.wait(5)
        assert auth.check("prometheus", b"pw") is None
    finally:
        release.set()
        first.join(5)
    assert auth.check("prometheus", b"pw") is True
