"""``verify_boss``: every invariant of DESIGN.md, checked against one atomic snapshot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from bosses.fight_configs import FightSetup, fight_config_get
from bosses.models import BossEncounter, BossEvent, BossStatus, SagaKind, SagaRun, SagaStatus
from bosses.selectors import EventLogUndecodable, Ledger, boss_archived_events, boss_ledger, event_log_row
from core import authority, keys
from core.phases import FULL_DAMAGE_BP, damage_taken_split, phase_of, regen_heal
from worldboss_sdk.protocol import ENDED_STATUSES


@dataclass
class VerifyReport:
    """The ledger figures and the problems found (``ok`` when there are none)."""

    boss: str
    accepted: int = 0
    applied: int = 0
    overkill: int = 0
    mitigated: int = 0
    healed: int = 0
    buffered: int = 0
    discarded: int = 0
    recovered: int = 0
    hp: int = 0
    max_hp: int = 0
    version: int = 0
    replay_hp: int = 0
    status: str = ""
    events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def boss_verify(*, boss: BossEncounter) -> VerifyReport:
    """Check the ledger equation (accepted = applied + mitigated + overkill + buffered),
    hp = max_hp - applied + healed, the log replay (each tick's regeneration, multiplier and
    split included) and versions."""
    report = VerifyReport(
        boss=boss.slug, max_hp=fight_config_get(boss=boss, fight=boss.fight).max_hp, status=boss.status
    )
    ledger = boss_ledger(boss_id=boss.pk)
    archived = boss_archived_events(boss=boss)
    if not ledger.state:
        if archived or boss.status not in (BossStatus.DRAFT,):
            report.problems.append(
                f"no authority in Redis for a {boss.status} boss ({len(archived)} archived events)"
            )
        report.hp = report.replay_hp = report.max_hp
        return report

    theirs = ledger.state.get("incarnation") or ""
    if theirs and theirs != boss.incarnation:
        # Every other check would compare this database's books with someone else's fight.
        report.problems.append(
            f"the authority in Redis belongs to another database or fight: incarnation {theirs}, "
            f"this fight's is {boss.incarnation or '(none)'}; check REDIS_URL and DATABASE_URL"
        )
        return report

    _read_ledger(report, ledger)
    p = report.problems
    p.extend(_ledger_problems(report, boss=boss, buffers=ledger.buffers))
    p.extend(_settlement_totals_problems(report, boss=boss, settled=ledger.settled))
    p.extend(_settlements_vs_sagas(boss, ledger.settled))
    p.extend(_failed_sagas(boss, ledger.settled))
    p.extend(_replay_problems(report, boss=boss, archived=archived, live_log=ledger.log))
    return report


def _read_ledger(report: VerifyReport, ledger: Ledger) -> None:
    """Copy the authority's figures (its hash and its buffers) into ``report``."""
    n = ledger.number
    report.accepted, report.applied, report.overkill = n("accepted"), n("applied"), n("overkill")
    report.mitigated = int(ledger.state.get("mitigated") or 0)  # absent before mechanics
    report.healed = int(ledger.state.get("healed") or 0)
    report.discarded, report.recovered = n("discarded"), n("recovered")
    report.hp, report.max_hp, report.version = n("hp"), n("max_hp"), n("version")
    report.status = ledger.state.get("status", "")
    report.buffered = sum(ledger.buffers.values())


def _ledger_problems(report: VerifyReport, *, boss: BossEncounter, buffers: dict[str, int]) -> list[str]:
    """The ledger equation, hp = max_hp - applied, the HP range and the configured max HP."""
    p = []
    if report.accepted != report.applied + report.mitigated + report.overkill + report.buffered:
        p.append(
            f"ledger: accepted {report.accepted} != applied {report.applied} + mitigated "
            f"{report.mitigated} + overkill {report.overkill} + buffered {report.buffered}"
        )
    if report.hp != report.max_hp - report.applied + report.healed:
        p.append(
            f"hp {report.hp} != max_hp {report.max_hp} - applied {report.applied} + healed {report.healed}"
        )
    if not 0 <= report.hp <= report.max_hp:
        p.append(f"hp {report.hp} outside [0, {report.max_hp}]")
    configured = fight_config_get(boss=boss, fight=boss.fight).max_hp  # the frozen one
    if report.max_hp != configured:
        p.append(f"authority max_hp {report.max_hp} != configured {configured}")
    if report.overkill and report.hp != 0:
        p.append(f"overkill {report.overkill} recorded while hp is {report.hp}")
    if any(v < 0 for v in buffers.values()):
        p.append("a buffer is negative")
    if report.buffered and report.status in ENDED_STATUSES:
        # The tick skips a boss that is over: this damage was counted accepted and never applies.
        p.append(f"buffered {report.buffered} on a {report.status} boss can never drain")
    return p


def _settlement_totals_problems(
    report: VerifyReport, *, boss: BossEncounter, settled: dict[str, str]
) -> list[str]:
    """Recovered and discarded match the fair and harsh settlements, and the crash sagas' sums."""
    p = []
    settlements = [authority.parse_settlement(v) for v in settled.values()]
    fair = sum(a for pol, a in settlements if pol == "fair")
    harsh = sum(a for pol, a in settlements if pol == "harsh")
    if fair != report.recovered:
        p.append(f"recovered {report.recovered} != fair settlements {fair}")
    if harsh != report.discarded:
        p.append(f"discarded {report.discarded} != harsh settlements {harsh}")
    sagas = SagaRun.objects.filter(
        boss=boss, fight=boss.fight, kind=SagaKind.CRASH, status=SagaStatus.COMPLETED
    )
    for pol, total in (("fair", fair), ("harsh", harsh)):
        recorded = sum(s.amount for s in sagas if s.policy == pol)
        if sagas and recorded != total:
            p.append(f"{pol} crash sagas record {recorded} != {pol} settlements {total}")
    return p


def _replay_problems(
    report: VerifyReport,
    *,
    boss: BossEncounter,
    archived: list[BossEvent],
    live_log: list[tuple[str, dict[str, str]]],
) -> list[str]:
    """Replay the archived log and the live tail, merged by version: they must agree.

    Sets ``report.events`` and ``report.replay_hp``; the replay stops at the first event whose
    logged HP it does not reach. A live entry that cannot be read is a problem of its own
    (the archive of the boss stops before it) and is left out of the replay.
    """
    p = []
    entries: dict[int, BossEvent] = {}
    for ev in archived:
        entries[ev.version] = ev
    for entry_id, f in live_log:
        try:
            event = event_log_row(boss=boss, entry_id=entry_id, fields=f)
        except EventLogUndecodable as exc:
            p.append(str(exc))
            continue
        v = event.version
        if v in entries and _books(entries[v]) != _books(event):
            p.append(f"event {v}: archived and live entries differ")
        entries[v] = event
    report.events = len(entries)
    versions = sorted(entries)
    if versions != list(range(1, report.version + 1)):
        missing = sorted(set(range(1, report.version + 1)) - set(versions))[:5]
        p.append(f"event log versions are not 1..{report.version} (missing e.g. {missing})")
    setup = fight_config_get(boss=boss, fight=boss.fight)
    hp, carry = report.max_hp, None  # carry: what the previous tick left (None after another entry)
    for v in versions:
        ev = entries[v]
        problem = _replay_step(ev, hp=hp, setup=setup, carry=carry, max_hp=report.max_hp)
        if problem:
            p.append(problem)
        carry = (
            regen_heal(
                per_s=ev.regen_per_s,
                elapsed_ms=ev.regen_elapsed_ms,
                carry=ev.regen_carry,
                room=report.max_hp - hp,
            )[1]
            if ev.kind == "tick"
            else None
        )
        hp += ev.healed - ev.applied
        if hp != entries[v].hp:
            p.append(f"event {v}: replayed hp {hp} != logged hp {entries[v].hp}")
            break
    report.replay_hp = hp
    if report.replay_hp != report.hp:
        p.append(f"replay of the event log gives hp {report.replay_hp}, authority has {report.hp}")
    return p


def _books(ev: BossEvent) -> tuple[int, ...]:
    return (
        ev.hp,
        ev.applied,
        ev.overkill,
        ev.mitigated,
        ev.damage_taken_bp,
        ev.healed,
        ev.regen_per_s,
        ev.regen_elapsed_ms,
        ev.regen_carry,
    )


def _replay_step(ev: BossEvent, *, hp: int, setup: FightSetup, carry: int | None, max_hp: int) -> str | None:
    """What is wrong with one event replayed from ``hp``: its healing must be the regeneration
    of the phase ``hp`` is in over the logged elapsed time (from the carry the previous tick
    left), and its per-shard deltas the drained total, split as that phase's multiplier splits
    it against the healed HP (tick.lua)."""
    total = sum(int(x) for x in ev.deltas.values())
    if total != ev.applied + ev.mitigated + ev.overkill:
        return (
            f"event {ev.version}: per-shard deltas sum to {total}, not applied + mitigated + "
            f"overkill {ev.applied + ev.mitigated + ev.overkill}"
        )
    if ev.kind != "tick":
        return None if ev.healed == 0 else f"event {ev.version}: a {ev.kind} entry heals {ev.healed}"
    phase, _name = phase_of(setup.thresholds, hp)
    rate = setup.regen[phase] if phase < len(setup.regen) else 0
    healed, _ = regen_heal(per_s=rate, elapsed_ms=ev.regen_elapsed_ms, carry=ev.regen_carry, room=max_hp - hp)
    if (ev.regen_per_s, ev.healed) != (rate, healed) or (carry is not None and ev.regen_carry != carry):
        return (
            f"event {ev.version}: at hp {hp} the phase regenerates {rate}/s: over "
            f"{ev.regen_elapsed_ms} ms it heals {healed}; logged {ev.regen_per_s}/s, healed {ev.healed}, "
            f"carry {ev.regen_carry} (the previous tick left {carry})"
        )
    bp = setup.damage_taken[phase] if phase < len(setup.damage_taken) else FULL_DAMAGE_BP
    counted, mitigated = damage_taken_split(total, bp)
    if (ev.damage_taken_bp, ev.mitigated, ev.applied) != (bp, mitigated, min(counted, hp + healed)):
        return (
            f"event {ev.version}: at hp {hp + healed} the phase takes {bp} bp of {total}: mitigated "
            f"{mitigated}, applied {min(counted, hp + healed)}; logged {ev.damage_taken_bp} bp, mitigated "
            f"{ev.mitigated}, applied {ev.applied}"
        )
    return None


def _settlements_vs_sagas(boss: BossEncounter, settled: dict[str, str]) -> list[str]:
    """Each settled session has one completed crash saga recording the same policy and amount,
    and each completed crash saga has its settlement in Redis."""
    problems = []
    sagas = {
        keys.session_id(s.shard_key, s.epoch): s
        for s in SagaRun.objects.filter(boss=boss, fight=boss.fight, kind=SagaKind.CRASH)
    }
    for sess, record in sorted(settled.items()):
        saga = sagas.get(sess)
        if saga is None:
            problems.append(f"settlement {sess}={record} has no crash saga record")
        elif saga.status != SagaStatus.COMPLETED:
            problems.append(f"crash saga {saga.key} is {saga.status} (settlement {record})")
        elif (saga.policy, saga.amount) != authority.parse_settlement(record):
            problems.append(
                f"crash saga {saga.key} records {saga.policy}:{saga.amount} != settlement {record}"
            )
    for sess, saga in sorted(sagas.items()):
        if saga.status == SagaStatus.COMPLETED and sess not in settled:
            problems.append(f"crash saga {saga.key} is completed but {sess} has no settlement")
    return problems


def _failed_sagas(boss: BossEncounter, settled: dict[str, str]) -> list[str]:
    """A saga of this fight that ended ``failed`` did not do its work: each one is a problem.

    A failed crash saga whose session has a settlement is already reported with it.
    """
    problems = []
    for saga in SagaRun.objects.filter(boss=boss, fight=boss.fight, status=SagaStatus.FAILED):
        if saga.kind == SagaKind.CRASH and keys.session_id(saga.shard_key, saga.epoch) in settled:
            continue
        error = (saga.detail or {}).get("error") or {}
        problems.append(f"saga {saga.key} failed at {error.get('step') or '?'}: {error.get('message', '')}")
    return problems
