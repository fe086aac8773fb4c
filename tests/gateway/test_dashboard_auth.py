"""Dashboard accounts, sessions, CSRF, the login limiter and the `[dashboard]` config: attacks as tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.config import parse_config
from gateway.dashboard.app import HouseholdSite, create_app
from gateway.dashboard.auth import Account, AccountStore, LoginLimiter, SessionCodec, csrf_ok
from gateway.dashboard.live import LiveHub
from gateway.errors import ConfigError

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(tmp_path: Path) -> AccountStore:
    store = AccountStore(tmp_path / "accounts.sqlite3")
    store.add("alice", "household", "house-07", PASSWORD)
    store.add("op", "operator", "community", PASSWORD)
    return store


def test_passwords_are_argon2id_hashes_and_verify(accounts: AccountStore, tmp_path: Path) -> None:
    assert accounts.verify("alice", PASSWORD) == Account("alice", "household", "house-07")
    assert accounts.verify("alice", PASSWORD + "x") is None
    assert accounts.verify("nobody", PASSWORD) is None
    raw = (tmp_path / "accounts.sqlite3").read_bytes()
    assert PASSWORD.encode() not in raw and b"$argon2id$" in raw
    assert (tmp_path / "accounts.sqlite3").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="at least"):
        accounts.add("bob", "household", "house-09", "short")
    with pytest.raises(ValueError, match="role"):
        accounts.add("bob", "admin", "house-09", PASSWORD)


def test_a_tampered_or_foreign_cookie_reads_as_no_session() -> None:
    codec = SessionCodec(b"k" * 32)
    value = codec.issue(Account("alice", "household", "house-07"))
    session = codec.read(value)
    assert session is not None and session.account.household == "house-07"
    assert codec.read(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert SessionCodec(b"x" * 32).read(value) is None  # signed with another gateway's key
    assert codec.read("") is None and codec.read(None) is None
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "forged") and not csrf_ok(None, "x")


def test_household_sees_only_its_own_operator_sees_all() -> None:
    assert Account("a", "household", "house-07").may_see("house-07")
    assert not Account("a", "household", "house-07").may_see("house-09")
    assert Account("o", "operator", "community").may_see("house-09")


def test_login_limiter_golden_vector() -> None:
    lim = LoginLimiter(attempts=3, window_s=60)
    for t in (0.0, 1.0, 2.0):
        assert lim.allowed("ip:1", t)
        lim.failed("ip:1", t)
    assert not lim.allowed("ip:1", 59.0)
    assert lim.allowed("ip:1", 60.5)  # the first failure has left the window
    lim.succeeded("ip:1")
    assert lim.allowed("ip:1", 61.0)


def test_login_limiter_memory_is_bounded() -> None:
    lim = LoginLimiter(attempts=1, window_s=60, max_keys=100)
    for i in range(1000):
        lim.failed(f"ip:{i}", float(i))
    assert len(lim._failures) <= 100


def _client(accounts: AccountStore) -> TestClient:
    site = HouseholdSite("house-07", lambda now: {}, LiveHub(), accounts, secure_cookies=False)
    return TestClient(create_app(site), base_url="http://127.0.0.1")


def test_login_is_rate_limited_even_with_the_right_password(accounts: AccountStore) -> None:
    client = _client(accounts)
    for _ in range(5):
        assert client.post("/login", data={"name": "alice", "password": "guess-guess"}).status_code == 401
    r = client.post("/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 429 and r.headers["retry-after"]


def test_pages_need_a_session_and_posts_a_csrf_token(accounts: AccountStore) -> None:
    client = _client(accounts)
    assert client.get("/household/house-07", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/household/house-07/events", follow_redirects=False).status_code == 303
    r = client.post("/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/household/house-07"
    assert (
        "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    )
    assert client.get("/household/house-09/data.json").status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf": "guess"}).status_code == 403


def test_hub_bounds_viewers_and_ends_streams_on_close() -> None:
    async def main() -> list[str]:
        hub = LiveHub(max_viewers=2)
        assert hub.admit() and hub.admit() and not hub.admit()
        hub.publish({"seq": 1})
        frames: list[str] = []

        async def read() -> None:
            async for frame in hub.stream():
                frames.append(frame.decode())

        task = asyncio.create_task(read())
        await asyncio.sleep(0.01)
        hub.publish({"seq": 2})
        await asyncio.sleep(0.01)
        hub.close()
        await asyncio.wait_for(task, 1)
        assert hub.viewers == 1
        return frames

    frames = asyncio.run(main())
    assert [f.split("data: ")[1].strip() for f in frames] == ['{"seq": 1}', '{"seq": 2}']


def test_hub_keeps_the_newest_snapshot_once_and_every_viewer_sends_the_same_bytes() -> None:
    async def main() -> tuple[list[bytes], list[bytes]]:
        hub = LiveHub(ring=16, snapshots=frozenset({"chain"}))
        assert hub.admit() and hub.admit()
        hub.publish({"seq": -1})
        a, b = hub.stream(), hub.stream()
        assert await anext(a) is await anext(b)
        for i in range(5):  # both viewers are busy while ten events arrive
            hub.publish({"n": i}, "chain")
            hub.publish({"seq": i})
        lagging = [await anext(a) for _ in range(6)]
        other = [await anext(b) for _ in range(6)]
        hub.close()
        return lagging, other

    lagging, other = asyncio.run(main())
    assert all(x is y for x, y in zip(lagging, other, strict=True))  # encoded once for all viewers
    assert [f.split(b"data: ")[1].strip() for f in lagging] == [
        b'{"seq": 0}', b'{"seq": 1}', b'{"seq": 2}', b'{"seq": 3}', b'{"n": 4}', b'{"seq": 4}',
    ]  # readings all in order, of the snapshots only the newest  # fmt: skip


BASE = {
    "gateway": {"id": "house-07", "state_dir": "/tmp/s"},
    "meter": {"device_id": "n", "hmac_key_file": "k"},
}


@pytest.mark.parametrize("listen", ["0.0.0.0:8088", "8.8.8.8:80", "[::]:8088", "example.com:80", "127.0.0.1"])
def test_dashboard_binds_only_loopback_or_lan(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"dashboard\.listen"):
        parse_config({**BASE, "dashboard": {"enabled": True, "listen": listen}}, Path("/tmp"))


@pytest.mark.parametrize("listen", ["127.0.0.1:8088", "192.168.1.20:8088", "[::1]:8088", "10.0.0.5:80"])
def test_dashboard_lan_addresses_are_accepted(listen: str) -> None:
    cfg = parse_config({**BASE, "dashboard": {"enabled": True, "listen": listen}}, Path("/tmp"))
    assert cfg.dashboard is not None and cfg.dashboard.enabled
    assert cfg.dashboard.accounts_path == Path("/tmp/s/dashboard.sqlite3")
    assert parse_config(BASE, Path("/tmp")).dashboard is None


def test_dashboard_ships_the_pinned_uplot_build() -> None:
    """A pip-installed gateway has no node_modules: the package carries uPlot, the same bytes npm installs."""
    import json

    from gateway.dashboard.web import HERE, UPLOT_FILES, vendor_dir

    repo = HERE.parents[1]
    pinned = json.loads((repo / "package.json").read_text())["dependencies"]["uplot"]
    installed = json.loads((repo / "node_modules" / "uplot" / "package.json").read_text())["version"]
    assert installed == pinned, "run `npm ci`: node_modules' uPlot is not the pinned version"
    assert vendor_dir() == HERE / "vendor" / "uplot"
    for name in UPLOT_FILES:
        shipped = (vendor_dir() / name).read_bytes()
        assert shipped == (repo / "node_modules" / "uplot" / "dist" / name).read_bytes(), (
            f"{name}: the shipped copy differs from uPlot {pinned}; copy node_modules/uplot/dist/{name} again"
        )
