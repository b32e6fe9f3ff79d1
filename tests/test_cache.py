"""ResponseCache: canonical keys, LRU, ttl, single flight for tasks and threads."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import threading
import time

import anthropic
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted_server import ScriptedServer, ok

import ratekeeper as rk


def test_key_ignores_argument_order_and_separates_methods():
    key = rk.ResponseCache.key
    assert key("chat", {"model": "m", "messages": [1]}) == key(
        "chat", {"messages": [1], "model": "m"}
    )
    assert key("chat", {"model": "m"}) != key("embeddings", {"model": "m"})
    assert key("chat", {"model": "m"}) != key("chat", {"model": "n"})


def test_identical_calls_are_answered_once():
    cache = rk.ResponseCache()
    calls = []
    for _ in range(3):
        assert cache.get_or_call("k", lambda: calls.append(1) or "answer") == "answer"
    assert len(calls) == 1
    assert (cache.hits, cache.misses) == (2, 1)


def test_least_recently_used_is_evicted_beyond_maxsize():
    cache = rk.ResponseCache(maxsize=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") == (False, None)
    assert cache.get("a") == (True, 1)
    assert cache.get("c") == (True, 3)
    assert len(cache) == 2


def test_answers_expire_after_ttl():
    clock = rk.ManualClock()
    cache = rk.ResponseCache(ttl=10.0, clock=clock)
    cache.put("k", "v")
    clock.advance(9.9)
    assert cache.get("k") == (True, "v")
    clock.advance(0.2)
    assert cache.get("k") == (False, None)
    assert len(cache) == 0


def test_errors_are_not_stored():
    cache = rk.ResponseCache()
    with pytest.raises(ZeroDivisionError):
        cache.get_or_call("k", lambda: 1 / 0)
    assert cache.get_or_call("k", lambda: "fine") == "fine"


async def test_concurrent_identical_async_requests_share_one_call():
    cache = rk.ResponseCache()
    calls = 0

    async def slow_answer() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "shared"

    results = await asyncio.gather(*(cache.get_or_call_async("k", slow_answer) for _ in range(8)))
    assert results == ["shared"] * 8
    assert calls == 1


async def test_a_cancelled_leader_hands_the_call_to_a_waiting_follower():
    cache = rk.ResponseCache()
    started = asyncio.Event()
    calls = 0

    async def answer() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return "second"

    leader = asyncio.ensure_future(cache.get_or_call_async("k", answer))
    await started.wait()
    follower = asyncio.ensure_future(cache.get_or_call_async("k", answer))
    await asyncio.sleep(0)
    leader.cancel()
    assert await follower == "second"
    assert calls == 2
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_failed_shared_call_raises_in_every_waiter():
    cache = rk.ResponseCache()

    async def broken() -> str:
        await asyncio.sleep(0.02)
        raise KeyError("boom")

    results = await asyncio.gather(
        *(cache.get_or_call_async("k", broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, KeyError) for result in results)
    assert len(cache) == 0


def test_threads_asking_the_same_thing_share_one_call():
    cache = rk.ResponseCache()
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def answer() -> str:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.1)
        return "v"

    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_call("k", answer))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["v"] * 6
    assert calls == 1


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True])
def test_bad_maxsize_is_refused(maxsize):
    with pytest.raises(ValueError, match="maxsize"):
        rk.ResponseCache(maxsize=maxsize)


@pytest.mark.parametrize("ttl", [0, -1.0, float("nan"), float("inf")])
def test_bad_ttl_is_refused(ttl):
    with pytest.raises(ValueError, match="ttl"):
        rk.ResponseCache(ttl=ttl)


class Opaque:
    """An argument whose repr says nothing about its state."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Opaque()"


def test_arguments_that_differ_only_in_state_get_different_keys():
    assert rk.ResponseCache.key("m", {"x": Opaque(1)}) != rk.ResponseCache.key(
        "m", {"x": Opaque(2)}
    )
    assert rk.ResponseCache.key("m", {"x": Opaque(1)}) == rk.ResponseCache.key(
        "m", {"x": Opaque(1)}
    )


def test_a_mapping_with_keys_of_mixed_types_still_has_a_key():
    mixed = {"logit_bias": {1: 5, "a": 3}}
    assert rk.ResponseCache.key("m", mixed) == rk.ResponseCache.key(
        "m", {"logit_bias": {"a": 3, 1: 5}}
    )
    assert rk.ResponseCache.key("m", mixed) != rk.ResponseCache.key("m", {"logit_bias": {1: 5}})


# -- the whole request identity (SPEC 15) --------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"x": b"abc"}, {"x": "abc"}),
        # bytes were keyed by their digest, a string that spelled it matched
        ({"x": b"abc"}, {"x": hashlib.blake2b(b"abc", digest_size=16).hexdigest()}),
        ({"x": b"abc"}, {"x": bytearray(b"abc")}),
        ({"x": {"a"}}, {"x": ["a"]}),
        ({"x": {"a"}}, {"x": ["'a'"]}),  # sets were keyed by their members' reprs
        ({"x": {"a"}}, {"x": frozenset({"a"})}),
        ({"x": [1, 2]}, {"x": (1, 2)}),
        ({"x": 1}, {"x": 1.0}),
        ({"x": 1}, {"x": True}),
        ({"x": 1.0}, {"x": True}),
        ({"x": 0}, {"x": False}),
        ({"x": "1"}, {"x": 1}),
        ({"x": None}, {"x": "null"}),
        ({"logit_bias": {1: 5}}, {"logit_bias": {"1": 5}}),  # JSON made int keys strings
        ({"x": {"a": 1}}, {"x": [["a", 1]]}),
    ],
)
def test_arguments_of_different_types_get_different_keys(one, other):
    assert rk.ResponseCache.key("m", one) != rk.ResponseCache.key("m", other)
    assert rk.ResponseCache.key("m", one) == rk.ResponseCache.key("m", copy.deepcopy(one))


def test_the_client_identity_is_part_of_the_key():
    arguments = {"model": "m"}
    assert rk.ResponseCache.key("m", arguments, client_identity="a") != rk.ResponseCache.key(
        "m", arguments, client_identity="b"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"api_key": "sk-other"},
        {"organization": "org-2"},
        {"project": "proj-2"},
        {"default_headers": {"X-Tenant": "2"}},
        {"default_query": {"tenant": "2"}},
        {"base_url": "http://127.0.0.1:9/v2"},
    ],
)
def test_client_identity_tells_clients_apart(change):
    settings = {
        "api_key": "sk-secret-123",
        "organization": "org-1",
        "project": "proj-1",
        "base_url": "http://127.0.0.1:9/v1",
        "default_headers": {"X-Tenant": "1"},
        "default_query": {"tenant": "1"},
    }
    identity = rk.ResponseCache.client_identity
    assert identity(openai.OpenAI(**settings)) == identity(openai.OpenAI(**settings))
    assert identity(openai.OpenAI(**settings)) != identity(openai.OpenAI(**{**settings, **change}))


def test_client_identity_never_holds_the_key_in_plain_text():
    identity = rk.ResponseCache.client_identity
    for client in (
        openai.OpenAI(api_key="sk-secret-123"),
        anthropic.Anthropic(api_key="sk-ant-secret-123"),
        anthropic.Anthropic(auth_token="tok-secret-123"),
    ):
        assert "secret" not in identity(client)
    assert identity(anthropic.Anthropic(api_key="a")) != identity(anthropic.Anthropic(api_key="b"))
    assert identity(anthropic.Anthropic(auth_token="a")) != identity(
        anthropic.Anthropic(auth_token="b")
    )


def numbered_answers(server: ScriptedServer) -> None:
    """Every request the server really answers gets its own prompt_tokens: 1, 2, 3, ..."""
    server.responder = lambda hit: ok(usage=(server.hit_count(), 1))


def ask(client, **extra):
    return client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "2+2?"}], **extra
    )


def test_two_clients_with_different_keys_never_share_an_answer(scripted_server):
    numbered_answers(scripted_server)
    cache = rk.ResponseCache()

    def client(key: str) -> openai.OpenAI:
        return rk.wrap(openai.OpenAI(base_url=scripted_server.openai_url, api_key=key), cache=cache)

    tenant_a, tenant_b = client("sk-a"), client("sk-b")
    assert ask(tenant_a).usage.prompt_tokens == 1
    assert ask(tenant_b).usage.prompt_tokens == 2
    assert ask(tenant_a).usage.prompt_tokens == 1  # from the cache
    assert ask(tenant_b).usage.prompt_tokens == 2
    assert scripted_server.hit_count() == 2
    assert [hit.headers["authorization"] for hit in scripted_server.hits] == [
        "Bearer sk-a",
        "Bearer sk-b",
    ]
    # A copy with another key is another tenant too.
    assert ask(tenant_a.with_options(api_key="sk-c")).usage.prompt_tokens == 3


def test_organization_and_headers_keep_answers_apart(scripted_server):
    numbered_answers(scripted_server)
    cache = rk.ResponseCache()
    url = scripted_server.openai_url
    first = rk.wrap(openai.OpenAI(base_url=url, api_key="k", organization="o1"), cache=cache)
    second = rk.wrap(openai.OpenAI(base_url=url, api_key="k", organization="o2"), cache=cache)
    third = rk.wrap(
        openai.OpenAI(base_url=url, api_key="k", organization="o1", default_headers={"X-T": "3"}),
        cache=cache,
    )
    answers = [ask(client).usage.prompt_tokens for client in (first, second, third)]
    assert answers == [1, 2, 3]
    assert ask(first, extra_headers={"X-User": "u1"}).usage.prompt_tokens == 4
    assert ask(first, extra_headers={"X-User": "u1"}).usage.prompt_tokens == 4
    assert ask(first).usage.prompt_tokens == 1


def test_every_caller_gets_its_own_object(scripted_server):
    numbered_answers(scripted_server)
    cache = rk.ResponseCache()
    client = rk.wrap(openai.OpenAI(base_url=scripted_server.openai_url, api_key="k"), cache=cache)
    first = ask(client)
    original = first.choices[0].message.content
    first.choices[0].message.content = "changed by the first caller"
    second = ask(client)
    third = ask(client)
    assert scripted_server.hit_count() == 1
    assert second.choices[0].message.content == original
    assert second is not third and second.choices is not third.choices
    second.usage.prompt_tokens = 99
    assert third.usage.prompt_tokens == 1


async def test_concurrent_async_callers_each_get_their_own_object(scripted_server):
    numbered_answers(scripted_server)
    cache = rk.ResponseCache()
    client = rk.wrap(
        openai.AsyncOpenAI(base_url=scripted_server.openai_url, api_key="k"), cache=cache
    )
    answers = await asyncio.gather(*(ask(client) for _ in range(5)))
    assert scripted_server.hit_count() == 1
    assert len({id(answer) for answer in answers}) == 5
    assert all(answer == answers[0] for answer in answers)


def test_threads_sharing_one_call_each_get_their_own_object():
    cache = rk.ResponseCache()
    barrier = threading.Barrier(4)
    results: list[list[int]] = []

    def answer() -> list[int]:
        time.sleep(0.1)
        return [1, 2]

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_call("k", answer))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[1, 2]] * 4
    assert len({id(result) for result in results}) == 4


def test_get_hands_out_copies_and_put_keeps_its_own():
    cache = rk.ResponseCache()
    value = {"answer": [1, 2]}
    cache.put("k", value)
    value["answer"].append(3)
    found, first = cache.get("k")
    assert found and first == {"answer": [1, 2]}
    first["answer"].clear()
    assert cache.get("k") == (True, {"answer": [1, 2]})


def test_an_answer_that_cannot_be_copied_is_not_stored():
    cache = rk.ResponseCache()
    lock = threading.Lock()
    assert cache.get_or_call("k", lambda: lock) is lock
    assert len(cache) == 0


def typed(value: object) -> object:
    """A value's exact identity as a request argument: every type kept, floats by repr."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(typed(item) for item in value))
    if isinstance(value, dict):
        return ("dict", frozenset((typed(k), typed(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, frozenset(typed(item) for item in value))
    return (type(value).__name__, value)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(min_value=-3, max_value=3, allow_nan=False),
    st.sampled_from(["", "a", "1", "true", "null"]),
    st.sampled_from([b"", b"a", b"1"]),
)
arguments = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 2)), inner, max_size=3),
        st.frozensets(st.one_of(st.integers(0, 3), st.text(max_size=2)), max_size=3).map(set),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(arguments, arguments)
def test_two_arguments_share_a_key_exactly_when_they_are_the_same_typed_value(one, other):
    key = rk.ResponseCache.key
    assert key("m", {"x": one}) == key("m", {"x": copy.deepcopy(one)})
    assert (key("m", {"x": one}) == key("m", {"x": other})) == (typed(one) == typed(other))


def test_request_identity_tells_senders_apart_and_ignores_what_changes_per_send(
    scripted_server,
):
    url = scripted_server.openai_url
    clients = [
        openai.OpenAI(base_url=url, api_key="sk-a", max_retries=0),
        openai.OpenAI(base_url=url, api_key="sk-b", max_retries=0),
        openai.OpenAI(base_url=url, api_key="sk-a", organization="o", max_retries=0),
        openai.OpenAI(base_url=url, api_key="sk-a", default_headers={"X-T": "1"}, max_retries=0),
    ]
    for client in clients:
        ask(client)
        ask(client, extra_headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-01"})
    ask(clients[0], extra_headers={"X-User": "u1"})
    identities = [rk.ResponseCache.request_identity(hit.headers) for hit in scripted_server.hits]
    # Two sends by one client are one sender; every client is another.
    assert identities[0::2][:4] == identities[1::2][:4]
    assert len(set(identities)) == 5
    for hit in scripted_server.hits:
        assert "sk-" not in rk.ResponseCache.request_identity(hit.headers)
