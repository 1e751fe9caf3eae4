"""NUL and other text no database stores: 400 ``malformed`` everywhere, never a 500, and
nothing written (PostgreSQL refuses NUL in text; run on both databases)."""

from __future__ import annotations

import pytest

from tests.api.conftest import Browserless

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

NUL = "\u0000"
LONE_SURROGATE = "\ud800"


def _rows():
    from bosses.models import BossEncounter, RewardGrant

    return (
        list(BossEncounter.objects.order_by("pk").values()),
        list(RewardGrant.objects.order_by("pk").values()),
    )


def _malformed(reply, where):
    assert (reply.status, reply.code) == (400, "malformed"), (where, reply)
    assert reply.headers["content-type"].startswith("application/json"), where


def test_nul_in_api_paths_and_queries(api, key):
    assert (
        api.post("/bosses", key=key, body={"name": "Draft", "slug": "draft-1", "max_hp": 1000}).status == 201
    )
    before = _rows()
    for path in (
        "/bosses/%00",
        "/bosses/draft%00",
        "/bosses/draft-1%00/fights/1/results",
        "/bosses/draft-1/fights/1/players/p%00",
        "/bosses/draft-1/fights/1/players/%01",
        "/rewards?boss=%00",
        "/rewards?player=%00",
        "/rewards?player=tp-1%00",
        "/rewards?player=tp%0A",
        "/bosses?limit=5&x%00=1",
    ):
        _malformed(api.get(path, key=key), path)
    for method, path in (("PATCH", "/bosses/draft%00"), ("POST", "/bosses/%00/go-live")):
        _malformed(api.call(method, path, key=key, body={"name": "x"}), path)
    assert _rows() == before


@pytest.mark.parametrize("bad", [NUL, LONE_SURROGATE])
def test_invalid_text_in_api_bodies_names_the_field(api, key, bad):
    assert (
        api.post("/bosses", key=key, body={"name": "Draft", "slug": "draft-1", "max_hp": 1000}).status == 201
    )
    before = _rows()
    for method, path, body, field in (
        ("POST", "/bosses", {"name": f"a{bad}", "slug": "nul-1", "max_hp": 10}, "name"),
        ("POST", "/bosses", {"name": "N", "slug": "nul-1", "max_hp": 10, "phases": f"50:A{bad}"}, "phases"),
        ("POST", "/bosses", {"name": "N", "slug": f"nul{bad}", "max_hp": 10}, "slug"),
        ("POST", "/bosses", {"name": "N", "slug": "nul-1", "max_hp": 10, f"k{bad}": 1}, "k\\x00"),
        ("PATCH", "/bosses/draft-1", {"name": bad}, "name"),
        ("PATCH", "/bosses/draft-1", {"phases": f"{bad}50:A"}, "phases"),
        ("POST", "/rewards/1/claim", {"claim_id": f"c{bad}"}, "claim_id"),
    ):
        reply = api.call(method, path, key=key, body=body)
        _malformed(reply, (path, field))
        if bad == NUL:
            assert reply.body["error"]["field"] == field, reply
    assert _rows() == before


def test_nul_in_pages_the_state_api_and_the_admin(api_server, superuser):
    """The admin's changelist filter and search, the pages and the public state API."""
    from bosses.models import BossEncounter

    BossEncounter.objects.create(name="B", slug="b-1", max_hp=100)
    anonymous = Browserless(api_server.base)
    for path in ("/api/bosses/b%00/state", "/play/b-1/?shard=%00", "/play/b%00/", "/?x=%00"):
        _malformed(anonymous.call("GET", path), path)
    admin = Browserless(api_server.base)
    assert admin.login(*superuser).status == 302
    changelist = "/admin/bosses/bossencounter/"
    assert admin.call("GET", changelist).status == 200
    for query in ("?status__exact=%00", "?q=%00", "?q=a%00b", "?o=%00", "?slug=%00"):
        _malformed(admin.call("GET", changelist + query), query)
    # a form field: the admin's add form, posted with a NUL in the name
    admin.call("GET", f"{changelist}add/")
    reply = admin.call(
        "POST",
        f"{changelist}add/",
        form={
            "csrfmiddlewaretoken": admin.cookie("csrftoken") or "",
            "name": f"x{NUL}",
            "slug": "nul-form",
            "max_hp": "100",
        },
    )
    _malformed(reply, "admin add form")
    assert not BossEncounter.objects.filter(slug="nul-form").exists()
