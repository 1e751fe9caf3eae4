"""/templates: the settings fights start from; a new boss from a template; a fight's frozen
configuration and what changed since (docs/liveops.md). Every write is a bosses service."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Path, Query, Router

from api import auth, selectors
from api.routers.bosses import boss_out
from api.routers.common import Paging, audited, errors
from api.routers.fights import FightPath
from api.schemas import (
    BossFromTemplate,
    BossOut,
    FightConfigDiff,
    TemplateCreate,
    TemplateOut,
    TemplatePage,
    TemplatePatch,
)
from bosses import services
from bosses.fight_configs import fight_config_diff, fight_config_get
from bosses.models import BossTemplate
from bosses.selectors import boss_get, template_get

router = Router(tags=["templates"])


def template_out(template: BossTemplate) -> dict[str, Any]:
    """The API's view of a template (its reward table by name)."""
    out = {f: getattr(template, f) for f in TemplateOut.model_fields if f != "reward_table"}
    out["reward_table"] = (
        template.reward_table.name if template.reward_table_id and template.reward_table else None
    )
    return out


@router.get("/templates", response={200: TemplatePage, **errors()}, auth=auth.READ, summary="List templates")
def templates_list(request: HttpRequest, paging: Query[Paging]) -> dict[str, Any]:
    """Every template by slug, one page at a time."""
    rows = BossTemplate.objects.select_related("reward_table").order_by("slug")
    return {
        "count": rows.count(),
        "offset": paging.offset,
        "limit": paging.limit,
        "items": [template_out(t) for t in rows[paging.offset : paging.offset + paging.limit]],
    }


@router.get(
    "/templates/{slug}", response={200: TemplateOut, **errors(404)}, auth=auth.READ, summary="Read a template"
)
def templates_read(request: HttpRequest, slug: str) -> dict[str, Any]:
    """One template's settings."""
    return template_out(template_get(slug=slug))


@router.post(
    "/templates", response={201: TemplateOut, **errors(400)}, auth=auth.OPERATE, summary="Create a template"
)
def templates_create(request: HttpRequest, payload: TemplateCreate) -> tuple[int, dict[str, Any]]:
    """A new template: the model's validation and the cross-field checks of a boss."""
    fields = payload.model_dump(exclude_unset=True)
    template = audited(
        request,
        action="template.create",
        target=f"template/{payload.slug}",
        work=lambda: services.template_save(template=None, fields=fields),
    )
    return 201, template_out(template)


@router.patch(
    "/templates/{slug}",
    response={200: TemplateOut, **errors(400, 404)},
    auth=auth.OPERATE,
    summary="Edit a template",
)
def templates_update(request: HttpRequest, slug: str, payload: TemplatePatch) -> dict[str, Any]:
    """Change a template; fights already started from it keep their frozen configuration."""
    fields = payload.model_dump(exclude_unset=True)
    template = audited(
        request,
        action="template.update",
        target=f"template/{slug}",
        work=lambda: services.template_save(template=template_get(slug=slug), fields=fields),
        detail={"fields": sorted(fields)},
    )
    return template_out(template)


@router.post(
    "/templates/{slug}/bosses",
    response={201: BossOut, **errors(400, 404)},
    auth=auth.OPERATE,
    summary="Create a boss from a template",
)
def templates_new_boss(
    request: HttpRequest, slug: str, payload: BossFromTemplate
) -> tuple[int, dict[str, Any]]:
    """A new draft boss with the template's settings (and an optional schedule)."""
    fields = payload.model_dump(exclude_unset=True)
    name, boss_slug = fields.pop("name"), fields.pop("slug")
    boss = audited(
        request,
        action="boss.create",
        target=f"boss/{boss_slug}",
        work=lambda: services.boss_create_from_template(
            template=template_get(slug=slug), name=name, slug=boss_slug, fields=fields
        ),
        detail={"template": slug},
    )
    return 201, boss_out(boss, with_live=False)


@router.get(
    "/bosses/{slug}/fights/{fight}/config",
    response={200: FightConfigDiff, **errors(404)},
    auth=auth.READ,
    summary="A fight's configuration",
)
def fight_config(request: HttpRequest, path: Path[FightPath]) -> dict[str, Any]:
    """The configuration the fight ran with (frozen when it went live) and what differs in the
    boss's current settings."""
    boss = boss_get(slug=path.slug)
    selectors.fight_check(boss=boss, fight=path.fight)
    setup = fight_config_get(boss=boss, fight=path.fight)
    return {
        "config": selectors.fight_config_out(setup=setup),
        "changes": [
            {"field": c.field, "before": c.before, "after": c.after}
            for c in fight_config_diff(boss=boss, fight=path.fight)
        ],
    }
