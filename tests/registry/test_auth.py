"""Authentication and transport policy of the registry client: challenges,
bearer tokens (fetch, reuse, refresh), basic auth, login, redirects that
must not leak credentials, plain HTTP only where allowed, mirrors."""

from __future__ import annotations

import socket
import urllib.parse

import aiohttp
import pytest
from aiohttp import web
from regkit import FakeRegistry, basic, make_image

from berth.errors import InvalidArgument, NotFound, Unauthorized
from berth.registry.auth import AuthConfig, parse_challenges
from berth.registry.hosts import RegistryOptions, is_loopback, normalize_server_address

IMAGE = make_image([{"etc/motd": b"hello\n"}, {"bin/x": b"x" * 5000}])


def _serve(fake, repo="app", tag="v1", image=IMAGE):
    fake.add_image(repo, tag, image)
    return f"{fake.address}/{repo}:{tag}"


# -- parsing ----------------------------------------------------------------------------

def test_parse_challenges():
    [c] = parse_challenges(['Bearer realm="https://auth.example/token",service="registry.example",'
                            'scope="repository:library/busybox:pull"'])
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "registry.example",
                        "scope": "repository:library/busybox:pull"}
    two = parse_challenges(['Basic realm="a, b", Bearer realm="https://x/t",scope="a:b:c"'])
    assert [(c.scheme, c.params) for c in two] == [
        ("basic", {"realm": "a, b"}), ("bearer", {"realm": "https://x/t", "scope": "a:b:c"})]
    [c] = parse_challenges(['Basic realm="quo\\"ted"'])
    assert c.params["realm"] == 'quo"ted'
    assert parse_challenges(["Negotiate"])[0].scheme == "negotiate"
    assert parse_challenges([""]) == []


def test_auth_config_from_header():
    import base64
    import json
    raw = json.dumps({"username": "u", "password": "p", "serveraddress": "r:5000"}).encode()
    padded = base64.urlsafe_b64encode(raw).decode()
    for header in (padded, padded.rstrip("=")):
        auth = AuthConfig.from_header(header)
        assert (auth.username, auth.password, auth.server_address) == ("u", "p", "r:5000")
    assert AuthConfig.from_header(base64.urlsafe_b64encode(b"{}").decode()).anonymous
    assert AuthConfig.from_header(None).anonymous
    legacy = AuthConfig.from_dict({"auth": base64.b64encode(b"joe:pw").decode()})
    assert (legacy.username, legacy.password) == ("joe", "pw")
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        AuthConfig.from_header("!!!not base64!!!")
    with pytest.raises(InvalidArgument, match="username is not a string"):
        AuthConfig.from_dict({"username": 5})
    # round trip, and the identity used for caches never holds the secret
    auth = AuthConfig("u", "secret")
    assert AuthConfig.from_header(auth.to_header()) == auth
    assert "secret" not in auth.identity


def test_hosts_policy():
    assert is_loopback("localhost:5000") and is_loopback("127.0.0.5") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example:5000")
    options = RegistryOptions(insecure=["registry.example:5000", "10.1.0.0/16"])
    assert options.is_insecure("registry.example:5000")
    assert options.is_insecure("10.1.2.3:443")
    assert not options.is_insecure("registry.example:6000")
    assert not options.is_insecure("other.example")
    assert options.endpoint("registry.example:5000").schemes == ("https", "http")
    assert options.endpoint("other.example").schemes == ("https",)
    assert options.endpoint("docker.io").host == "registry-1.docker.io"
    assert normalize_server_address("") == "docker.io"
    assert normalize_server_address("https://index.docker.io/v1/") == "docker.io"
    assert normalize_server_address("https://localhost:5000/v2/") == "localhost:5000"
    with pytest.raises(InvalidArgument, match="invalid registry mirror"):
        RegistryOptions(mirrors=["ftp://mirror"])
    with pytest.raises(InvalidArgument, match="bad CIDR"):
        RegistryOptions(insecure=["10.0.0.0/99"])


# -- flows --------------------------------------------------------------------------------

def test_bearer_token_flow(store, fake_registry):
    fake_registry.auth = "token"
    ref = _serve(fake_registry)
    [result] = store.pull(ref, auth=AuthConfig("alice", "s3cret"))
    assert result.image_id == IMAGE.config_digest
    token_requests = fake_registry.requests(None, "/token")
    assert token_requests, "no token was requested"
    assert token_requests[0].headers["Authorization"] == basic("alice", "s3cret")
    query = urllib.parse.parse_qs(token_requests[0].query)
    assert query == {"scope": ["repository:app:pull"], "service": ["fake-registry"],
                     "account": ["alice"]}
    # One token serves the whole pull.
    assert len(fake_registry.tokens_issued) == 1
    authorized = [s for s in fake_registry.seen if s.path.startswith("/v2/app")
                  and s.headers.get("Authorization") == "Bearer token-1"]
    assert len(authorized) >= 4


def test_expired_token_is_refreshed(store, fake_registry):
    fake_registry.auth = "token"
    ref = _serve(fake_registry)
    other = make_image([{"other": b"layer"}])
    fake_registry.add_image("app", "v2", other)
    store.pull(ref, auth=AuthConfig("alice", "s3cret"))
    for token in fake_registry.tokens_issued:
        token["at"] -= 10_000  # the registry no longer accepts it
    [result] = store.pull(f"{fake_registry.address}/app:v2", auth=AuthConfig("alice", "s3cret"))
    assert result.image_id == other.config_digest
    assert len(fake_registry.tokens_issued) == 2


def test_bad_credentials(store, fake_registry):
    fake_registry.auth = "token"
    ref = _serve(fake_registry)
    with pytest.raises(NotFound) as err:
        store.pull(ref, auth=AuthConfig("alice", "wrong"))
    assert "pull access denied for" in err.value.message
    assert "incorrect username or password" in err.value.message
    assert store.leftovers()["images"] == []


def test_basic_auth(store, fake_registry):
    fake_registry.auth = "basic"
    ref = _serve(fake_registry)
    with pytest.raises(NotFound, match="no basic auth credentials"):
        store.pull(ref)
    [result] = store.pull(ref, auth=AuthConfig("alice", "s3cret"))
    assert result.image_id == IMAGE.config_digest


def test_login(store, fake_registry):
    fake_registry.auth = "token"
    answer = asyncio_run(store.registry.login(AuthConfig("alice", "s3cret", server_address=fake_registry.address)))
    assert answer["Status"] == "Login Succeeded"
    # Login asks for a refresh token, which later operations can use instead of the password.
    assert answer["IdentityToken"] == "refresh-1"
    _serve(fake_registry)
    [result] = store.pull(f"{fake_registry.address}/app:v1",
                          auth=AuthConfig(identity_token="refresh-1"))
    assert result.image_id == IMAGE.config_digest
    assert any(s.method == "POST" for s in fake_registry.requests(None, "/token"))
    with pytest.raises(Unauthorized) as err:
        asyncio_run(store.registry.login(AuthConfig("alice", "nope", server_address=fake_registry.address)))
    assert "incorrect username or password" in err.value.message


def test_login_basic(store, fake_registry):
    fake_registry.auth = "basic"
    ok = asyncio_run(store.registry.login(AuthConfig("alice", "s3cret",
                                                     server_address=f"http://{fake_registry.address}/v2/")))
    assert ok == {"Status": "Login Succeeded", "IdentityToken": ""}
    with pytest.raises(Unauthorized) as err:
        asyncio_run(store.registry.login(AuthConfig("alice", "bad", server_address=fake_registry.address)))
    assert err.value.message == (f"login attempt to http://{fake_registry.address}/v2/ failed with "
                                 "status: 401 Unauthorized")


def test_redirects_do_not_leak_authorization(store, fake_registry, blob_store):
    fake_registry.auth = "basic"
    fake_registry.blob_redirect = blob_store.url
    ref = _serve(fake_registry)
    [result] = store.pull(ref, auth=AuthConfig("alice", "s3cret"))
    assert result.image_id == IMAGE.config_digest
    assert blob_store.seen, "blobs were not fetched from the blob store"
    for seen in blob_store.seen:
        assert "Authorization" not in seen.headers
        assert seen.query == "sig=abc"
    assert all(s.headers.get("Authorization") == basic("alice", "s3cret")
               for s in fake_registry.requests("GET", "/blobs/"))


class _Resolver(aiohttp.abc.AbstractResolver):
    """Names a test registry without touching /etc/hosts: every name is 127.0.0.1."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


def test_plain_http_only_for_loopback_or_insecure(make_store, fake_registry):
    _serve(fake_registry)
    ref = f"registry.test:{fake_registry.port}/app:v1"
    secure_only = make_store("secure", resolver=_Resolver())
    with pytest.raises(Exception) as err:
        secure_only.pull(ref)
    assert "server gave HTTP response to HTTPS client" in str(err.value)
    assert secure_only.leftovers()["images"] == []
    allowed = make_store("insecure", resolver=_Resolver(),
                         options=RegistryOptions(insecure=[f"registry.test:{fake_registry.port}"]))
    [result] = allowed.pull(ref)
    assert result.image_id == IMAGE.config_digest


def test_mirrors_are_tried_in_order(make_store):
    broken, good = FakeRegistry().start(), FakeRegistry().start()
    try:
        good.add_image("library/busybox", "latest", IMAGE)
        store = make_store("mirrored", options=RegistryOptions(
            mirrors=[f"http://{broken.address}", f"http://{good.address}"]))
        [result] = store.pull("busybox")
        assert result.image_id == IMAGE.config_digest
        assert broken.requests("GET", "/v2/library/busybox/manifests/latest")
        assert good.requests("GET", "/v2/library/busybox/manifests/latest")
        assert store.images.inspect("busybox")["RepoTags"] == ["busybox:latest"]
    finally:
        broken.stop()
        good.stop()


def test_mirror_errors_fall_back_to_the_next(make_store):
    failing = FakeRegistry().start()
    good = FakeRegistry().start()
    try:
        failing.hooks.append(lambda r: web.Response(status=503, headers={"Retry-After": "0"}))
        good.add_image("library/busybox", "latest", IMAGE)
        store = make_store("fallback", options=RegistryOptions(
            mirrors=[f"http://{failing.address}", f"http://{good.address}"]))
        [result] = store.pull("busybox:latest")
        assert result.image_id == IMAGE.config_digest
    finally:
        failing.stop()
        good.stop()


def asyncio_run(coro):
    import asyncio
    return asyncio.run(coro)


def test_registry_config_for_info():
    options = RegistryOptions(mirrors=["https://mirror.example"],
                              insecure=["reg.example:5000", "10.0.0.0/8"])
    info = options.info()
    assert info["Mirrors"] == ["https://mirror.example"]
    assert info["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "10.0.0.0/8"]
    assert info["IndexConfigs"]["docker.io"]["Mirrors"] == ["https://mirror.example"]
    assert info["IndexConfigs"]["reg.example:5000"]["Secure"] is False
    assert RegistryOptions().info()["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]


def test_proxies_from_the_environment(monkeypatch):
    from yarl import URL

    from berth.registry.client import proxy_for
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert proxy_for(URL("https://registry.example/v2/")) == "http://proxy.example:3128"
    assert proxy_for(URL("https://internal.example/v2/")) is None
    assert proxy_for(URL("https://127.0.0.1:5000/v2/")) is None
    assert proxy_for(URL("http://registry.example/v2/")) is None  # no HTTP_PROXY set
