"""Every refusal is JSON with a stable code, and nothing is written by a refused call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

WRITES = [
    ("POST", "/bosses"),
    ("PATCH", "/bosses/draft-1"),
    ("PUT", "/bosses/draft-1/schedule"),
    ("POST", "/rewards/1/claim"),
]


def _draft(api, key, slug="draft-1"):
    reply = api.post("/bosses", key=key, body={"name": "Draft", "slug": slug, "max_hp": 1000})
    assert reply.status == 201, reply


def _snapshot():
    from audit.models import AuditEntry
    from bosses.models import BossEncounter

    return (
        list(BossEncounter.objects.order_by("pk").values()),
        AuditEntry.objects.exclude(outcome="ok").count(),
    )


def test_bad_json_wrong_types_and_oversized_bodies_on_every_write(api, key):
    _draft(api, key)
    for method, path in WRITES:
        before = _snapshot()[0]
        bad_json = api.call(method, path, key=key, raw=b"{not json")
        assert (bad_json.status, bad_json.code) == (400, "malformed"), (path, bad_json)
        not_object = api.call(method, path, key=key, body=[1, 2])
        assert (not_object.status, not_object.code) == (422, "invalid"), (path, not_object)
        big = api.call(method, path, key=key, raw=b"{" + b" " * 70_000 + b"}")
        assert (big.status, big.code) == (413, "too_large"), (path, big)
        unknown = api.call(method, path, key=key, body={"surprise": 1})
        assert (unknown.status, unknown.code) == (422, "invalid"), (path, unknown)
        assert _snapshot()[0] == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "N", "slug": "bad slug", "max_hp": 10}, "slug"),
        ({"name": "", "slug": "s", "max_hp": 10}, "name"),
        ({"name": "N", "slug": "s", "max_hp": 0}, "max_hp"),
        ({"name": "N", "slug": "s", "max_hp": 2**60}, "max_hp"),
        ({"name": "N", "slug": "s", "max_hp": "many"}, "max_hp"),
        ({"name": "N", "slug": "s", "max_hp": 10, "phases": "50:A, 70:B"}, "phases"),
        ({"name": "N", "slug": "s", "max_hp": 10, "phases": "50:A takes 150%"}, "phases"),
        ({"name": "N", "slug": "s", "max_hp": 10, "phases": "50:A regen fast"}, "phases"),
        ({"name": "N", "slug": "s", "max_hp": 10, "min_damage": 9, "max_damage": 3}, "min_damage"),
        ({"name": "N", "slug": "s", "max_hp": 10, "tick_interval_ms": 5}, "tick_interval_ms"),
        ({"name": "N", "slug": "s", "max_hp": 10, "crash_policy": "lenient"}, "crash_policy"),
        ({"name": "N", "slug": "draft-1", "max_hp": 10}, "slug"),
        ({"slug": "s", "max_hp": 10}, "name"),
    ],
)
def test_create_refusals_name_the_field(api, key, body, field):
    _draft(api, key)
    before = _snapshot()[0]
    reply = api.post("/bosses", key=key, body=body)
    assert (reply.status, reply.code) == (422, "invalid"), reply
    assert reply.body["error"]["field"] == field, reply.body
    assert _snapshot()[0] == before


def test_patch_refusals_write_nothing(api, key):
    _draft(api, key)
    before = _snapshot()[0]
    for body, field in (
        ({"max_hp": -5}, "max_hp"),
        ({"min_damage": 500, "max_damage": 100}, "min_damage"),
        ({"name": "Fine", "phases": "nonsense"}, "phases"),  # a good field with a bad one: neither
        ({"phases": "75:Enraged takes 75 %, 50:Frenzy regen 2000000/s"}, "phases"),
        ({"heartbeat_interval_ms": 5000, "heartbeat_timeout_ms": 4000}, "heartbeat_timeout_ms"),
    ):
        reply = api.call("PATCH", "/bosses/draft-1", key=key, body=body)
        assert (reply.status, reply.code, reply.body["error"].get("field")) == (422, "invalid", field), reply
    assert _snapshot()[0] == before
    assert api.call("PATCH", "/bosses/ghost", key=key, body={"name": "x"}).code == "unknown_boss"
    mechanics = "75:Enraged takes 75% regen 50/s, 50:Frenzy"
    reply = api.call("PATCH", "/bosses/draft-1", key=key, body={"phases": mechanics})
    assert reply.status == 200 and reply.body["phases"] == mechanics, reply


def test_a_running_and_an_ended_fight_take_what_the_admin_takes(api, key):
    """PATCH on a live boss: each field is taken (200) exactly when the admin shows it
    editable, refused (409 naming the field, bosses.rules' reason) when read-only; an ended
    fight takes only its name."""
    from django.contrib import admin

    from bosses import rules
    from bosses.models import BossEncounter

    _draft(api, key, slug="rules-1")
    assert api.post("/bosses/rules-1/go-live", key=key).status == 200
    boss = BossEncounter.objects.get(slug="rules-1")
    readonly = set(admin.site._registry[BossEncounter].get_readonly_fields(None, boss))
    later = datetime.now(UTC) + timedelta(hours=1)
    new = {
        "name": "Renamed",
        "slug": "rules-2",
        "max_hp": 999,
        "phases": "60:Angry",
        "tick_interval_ms": 200,
        "crash_policy": "harsh",
        "heartbeat_interval_ms": 1500,
        "heartbeat_timeout_ms": 9000,
        "min_damage": 60,
        "max_damage": 160,
        "attacks_per_second": 5,
        "allow_guests": False,
        "starts_at": later.isoformat(),
        "ends_at": (later + timedelta(hours=1)).isoformat(),
    }
    for field, value in new.items():
        before = _snapshot()[0]
        reply = api.call("PATCH", "/bosses/rules-1", key=key, body={field: value})
        if field in readonly:
            boss.refresh_from_db()
            _, reason = rules.boss_edit_refusal(boss=boss, changes={field: value})
            assert (reply.status, reply.code, reply.body["error"]["field"]) == (
                409,
                "invalid_transition",
                field,
            ), reply
            assert reply.body["error"]["detail"] == reason
            assert _snapshot()[0] == before
        else:
            assert reply.status == 200, (field, reply)
            assert reply.body["live"]["status"] == "live"
    assert api.post("/bosses/rules-1/end", key=key).status == 200
    assert api.call("PATCH", "/bosses/rules-1", key=key, body={"name": "Old"}).body["name"] == "Old"
    refused = api.call("PATCH", "/bosses/rules-1", key=key, body={"min_damage": 1})
    assert (refused.status, refused.body["error"]["field"]) == (409, "min_damage")
    assert "its fight has ended" in refused.body["error"]["detail"]
    ends = (later + timedelta(hours=5)).isoformat()
    schedule = api.call("PUT", "/bosses/rules-1/schedule", key=key, body={"starts_at": None, "ends_at": ends})
    assert (schedule.status, schedule.code) == (409, "invalid_transition")


def test_claim_and_feed_refusals(api, key):
    assert api.post("/rewards/1/claim", key=key, body={"claim_id": ""}).code == "invalid"
    assert api.post("/rewards/1/claim", key=key, body={"claim_id": "x" * 65}).code == "invalid"
    assert api.post("/rewards/0/claim", key=key, body={"claim_id": "a"}).code == "invalid"
    assert api.post("/rewards/abc/claim", key=key, body={"claim_id": "a"}).code == "invalid"
    assert api.post("/rewards/77/claim", key=key, body={"claim_id": "a"}).code == "not_found"
    for query in ("after=-1", "limit=0", "limit=100000", "fight=0", "after=x"):
        reply = api.get(f"/rewards?{query}", key=key)
        assert (reply.status, reply.code) == (422, "invalid"), (query, reply)
    assert api.get("/rewards?boss=ghost", key=key).code == "unknown_boss"


def test_routes_methods_and_lifecycle_refusals(api, key):
    _draft(api, key)
    for path in ("/nothing", "/bosses/draft-1/fights", "/bosses/draft-1/fights/1/unknown"):
        reply = api.get(path, key=key)
        assert (reply.status, reply.code) == (404, "not_found"), (path, reply)
    reply = api.call("DELETE", "/bosses/draft-1", key=key)
    assert (reply.status, reply.code) == (405, "method_not_allowed")
    assert "PATCH" in reply.headers["allow"]
    assert api.get("/bosses/draft-1/go-live", key=key).code == "method_not_allowed"
    assert api.get("/bosses/ghost", key=key).code == "unknown_boss"
    for verb in ("pause", "resume", "end"):
        reply = api.post(f"/bosses/draft-1/{verb}", key=key)
        assert (reply.status, reply.code) == (409, "invalid_transition"), (verb, reply)
    assert api.get("/bosses/draft-1/fights/0/results", key=key).code == "invalid"
    assert api.get("/bosses/draft-1/fights/2/results", key=key).code == "not_found"
    assert api.get("/bosses?limit=0", key=key).code == "invalid"


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
BOSS_FIELDS = st.sampled_from(
    [
        "name",
        "slug",
        "max_hp",
        "phases",
        "min_damage",
        "max_damage",
        "tick_interval_ms",
        "starts_at",
        "ends_at",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(BOSS_FIELDS, SCALARS, max_size=6))
def test_any_create_body_is_a_draft_or_a_json_refusal(api, key, body):
    """Whatever the body, the answer is a created draft that validates, or a refusal in the
    error shape with nothing written."""
    from bosses.models import BossEncounter
    from bosses.services import boss_validate_config

    before = BossEncounter.objects.count()
    reply = api.post("/bosses", key=key, body=body)
    if reply.status == 201:
        boss = BossEncounter.objects.get(slug=reply.body["slug"])
        boss.full_clean()
        boss_validate_config(boss=boss)
        boss.delete()
    else:
        # 400 malformed: text no database stores (a NUL, a lone surrogate: core/text.py)
        code = {400: "malformed", 422: "invalid"}.get(reply.status)
        assert code is not None, reply
        assert set(reply.body) == {"error"} and reply.body["error"]["code"] == code
        assert isinstance(reply.body["error"]["detail"], str)
        assert BossEncounter.objects.count() == before
