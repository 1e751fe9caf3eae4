"""Admin login throttling through a live server: five wrong passwords for one username from
one address lock that pair out (the right password too) for the rest of the window; other
usernames still sign in; a success clears the count; the lock is in the audit trail."""

from __future__ import annotations

import pytest

from audit.login_throttle import MAX_FAILURES, WINDOW_S
from tests.api.conftest import Browserless
from tests.support import processes

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

LOCKED = "Too many failed logins"


@pytest.fixture
def server(transactional_db):
    proc, port = processes.start_server()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _users():
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    users.create_superuser("root", "root@example.com", "pw-root")
    users.create_superuser("other", "other@example.com", "pw-other")


def _signed_in(reply) -> bool:
    return reply.status == 302 and reply.headers["location"] == "/admin/"


def test_failed_logins_lock_the_username_and_address_out(server):
    from audit.models import AuditEntry
    from core import keys
    from core.redis import get_redis

    _users()
    client = Browserless(server)
    for attempt in range(MAX_FAILURES):
        reply = client.login("ROOT" if attempt % 2 else "root", "wrong")  # usernames case-folded
        assert reply.status == 200 and LOCKED not in reply.body, attempt
    refused = client.login("root", "pw-root")
    assert refused.status == 200 and LOCKED in refused.body and not _signed_in(refused)
    assert Browserless(server).login("root", "pw-root").status == 200  # a new client, same address
    ttl = get_redis().ttl(keys.login_failures_key(username="root", address="127.0.0.1"))
    assert 0 < ttl <= WINDOW_S
    # another account from the same address is not locked
    assert _signed_in(Browserless(server).login("other", "pw-other"))
    [entry] = AuditEntry.objects.filter(action="auth.login_throttled")
    assert (entry.actor, entry.target, entry.outcome, entry.address) == (
        "anonymous",
        "user/root",
        "rate_limited",
        "127.0.0.1",
    )
    # the window over (its key gone): the right password signs in again
    get_redis().delete(keys.login_failures_key(username="root", address="127.0.0.1"))
    assert _signed_in(Browserless(server).login("root", "pw-root"))


def test_a_success_clears_the_count(server):
    _users()
    for _ in range(2):
        for _ in range(MAX_FAILURES - 1):
            assert LOCKED not in Browserless(server).login("root", "wrong").body
        assert _signed_in(Browserless(server).login("root", "pw-root"))
