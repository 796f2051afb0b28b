"""The morning: plans, a refused sending, offline work, a crew, a restart, a reassignment.

The steps of :data:`client_demo.script.DAY` up to noon; each is a coroutine
over the :class:`~client_demo.cast.Cast` (see :mod:`client_demo.script` for the
story they tell). Every edit goes through a technician's typed API or the
office API and lands in the ledger.
"""

from __future__ import annotations

from typing import Any

from .cast import POLICY, WORKORDERS, Cast, is_submit_answer, plan
from .day import until
from .ledger import Edit, EditKind
from .relay import DemoError
from .technician import Technician

__all__ = [
    "chris_back",
    "crew_back",
    "crew_offline",
    "devices_start",
    "offline_send",
    "plan_the_day",
    "reassign_offline",
    "refused_send",
    "restart_with_unsent",
]


async def plan_the_day(cast: Cast) -> None:
    """Publish the policy and create every planned work order through the office API (the
    crew of 1003 goes to the ledger: the merged planning must keep it)."""
    version = await cast.office.publish_policy(POLICY)
    cast.log.add("office", f"policy v{version}: a signature and 1 photo required before sending")
    for planned in WORKORDERS:
        team = [cast.tech_ids[planned.technician], *(cast.tech_ids[m] for m in planned.crew)]
        planning: dict[str, Any] = {
            "technician": team[0],
            "planned_date": cast.clock.day.isoformat(),
            "planned_start": f"{cast.clock.day.isoformat()}T{planned.start}:00+00:00",
        }
        if planned.crew:
            planning["crew"] = team[1:]
            cast.ledger.add(Edit("office", cast.wo(planned.story), EditKind.CREW, "", team[1:]))
        body = {
            "id": cast.wo(planned.story),
            "number": f"WO-{planned.story}",
            "customer": {"name": planned.customer, "city": planned.city},
            "planning": planning,
            "short_description": planned.title,
            "tasks": list(planned.tasks),
        }
        await cast.office.create_workorder(body)
        who = " + ".join([planned.technician, *planned.crew])
        cast.log.add("office", f"{planned.story} {planned.title} ({planned.customer}) for {who}")
        await cast.pace.pause(0.3)


async def devices_start(cast: Cast) -> None:
    """Start every device and wait until it holds its planning's work orders, synced."""
    for tech in cast.techs.values():
        await tech.start()
    for tech in cast.techs.values():
        mine = [p for p in WORKORDERS if tech.name in (p.technician, *p.crew)]
        for planned in mine:
            await tech.wait_holds(cast.wo(planned.story))
        took = await tech.wait_synced()
        stories = ", ".join(p.story for p in mine)
        cast.log.add(tech.name, f"{tech.device_name} synced in {took:.1f} s: {stories}", "good")
    await cast.pace.pause()


async def refused_send(cast: Cast) -> None:
    """1001: anna does the work, Send is refused on the device (no signature), she has the
    customer sign and sends; waits for the accepted answer."""
    anna, wo = cast.techs["anna"], cast.wo("1001")
    anna.begin(wo)
    anna.start_timer(wo)
    cast.log.add("anna", "1001 started, timer running")
    for title in plan("1001").tasks:
        await cast.pace.pause(0.5)
        cast.clock.advance(12)
        anna.tick(wo, title)
        cast.log.add("anna", f"1001 ticked: {title}")
    article, description = cast.material()
    anna.use_material(wo, article, 1, description)
    anna.answer(wo, "pressure_bar", round(cast.rng.uniform(1.2, 2.0), 1))
    anna.answer(wo, "safe", True)
    anna.photo(wo, "1001-burner.jpg", "the cleaned burner")
    cast.clock.advance(8)
    anna.stop_timer(wo, remark="service")
    anna.note(wo, cast.note())
    anna.complete(wo)
    cast.log.add("anna", "1001 done: hours, material, answers, photo; she taps Send")
    await cast.pace.pause()
    if anna.send(wo) is not None:
        raise DemoError("1001 was sent without a signature")
    await cast.pace.pause(1.5)
    cast.clock.advance(3)
    await cast.send_and_confirm(anna, "1001", "J. de Vries")
    await cast.pace.pause()


async def offline_send(cast: Cast) -> None:
    """1002: bram loses the signal, finishes the work order and sends it offline (queued)."""
    bram, wo = cast.techs["bram"], cast.wo("1002")
    bram.go_offline()
    cast.log.add("bram", "in the basement of 1002: no signal", "warn")
    bram.begin(wo)
    for title in plan("1002").tasks:
        await cast.pace.pause(0.5)
        cast.clock.advance(15)
        bram.tick(wo, title)
        cast.log.add("bram", f"1002 ticked offline: {title}")
    bram.use_material(wo, "VALVE-22", 1, "Ball valve 22 mm")
    bram.answer(wo, "pressure_bar", round(cast.rng.uniform(1.2, 2.0), 1))
    cast.clock.advance(5)
    bram.add_hours(wo, 40, "repair")
    bram.note(wo, cast.note())
    bram.photo(wo, "1002-valve.jpg", "the new valve")
    bram.sign(wo, "K. Jansen")
    bram.complete(wo)
    key = bram.send(wo)
    if key is None:
        raise DemoError("1002 could not be sent")
    cast.keys["1002"] = key
    pending = bram.field.device.status.total_pending
    cast.log.add(
        "bram",
        f"1002 sent while offline: queued on the phone with {pending} changes and a photo upload",
        "warn",
    )
    await cast.pace.pause()


async def crew_offline(cast: Cast) -> None:
    """1003: anna and bram (its crew) both edit it without signal while the office patches
    its description and planned end."""
    anna, bram, wo = cast.techs["anna"], cast.techs["bram"], cast.wo("1003")
    anna.go_offline()
    cast.log.add("anna", "at 1003 with bram: no signal on the site either", "warn")
    tasks = plan("1003").tasks
    for tech, task in ((anna, tasks[0]), (bram, tasks[1])):
        tech.begin(wo)
        await cast.pace.pause(0.5)
        tech.tick(wo, task)
        cast.log.add(tech.name, f"1003 ticked offline: {task}")
    for tech, minutes in ((anna, 110), (bram, 95)):
        tech.add_hours(wo, minutes, "installation")
        tech.note(wo, cast.note())
        tech.answer(wo, "pressure_bar", round(cast.rng.uniform(1.0, 2.5), 1))
        cast.log.add(tech.name, f"1003: {minutes} min, a note and a pressure reading, offline")
        await cast.pace.pause(0.5)
    bram.photo(wo, "1003-outdoor-unit.jpg", "outdoor unit placed")
    changes = {
        "description": "Install the heat pump. The customer also asks to check the old boiler.",
        "planning": {"planned_end": f"{cast.clock.day.isoformat()}T15:30:00+00:00"},
    }
    await cast.patch("1003", changes)
    cast.log.add("office", "1003 patched meanwhile: description and planned end (15:30)")
    await cast.pace.pause()


async def restart_with_unsent(cast: Cast) -> None:
    """1005: chris edits offline, then his tablet restarts with those changes unsent."""
    chris, wo = cast.techs["chris"], cast.wo("1005")
    chris.go_offline()
    cast.log.add("chris", "at 1005: the tablet has no signal", "warn")
    chris.begin(wo)
    chris.tick(wo, plan("1005").tasks[0])
    chris.add_hours(wo, 35, "flushing")
    article, description = cast.material()
    chris.use_material(wo, article, 2, description)
    chris.note(wo, cast.note())
    await cast.pace.pause()
    cast.facts["unsent_at_restart"] = await chris.restart()
    await cast.pace.pause()


async def reassign_offline(cast: Cast) -> None:
    """1006: chris, still offline, prepares it; meanwhile the office moves it to anna."""
    chris, wo = cast.techs["chris"], cast.wo("1006")
    chris.note(wo, "Filters for the airco are in the van; parts list attached.")
    article, description = cast.material()
    chris.use_material(wo, article, 1, description)
    cast.log.add("chris", "1006 prepared offline: a note and the parts he set aside")
    await cast.pace.pause(0.5)
    await cast.patch("1006", {"planning": {"technician": cast.tech_ids["anna"]}})
    cast.log.add("office", "1006 moved from chris (offline) to anna: chris runs late")
    await cast.pace.pause()


async def crew_back(cast: Cast) -> None:
    """Anna and bram get signal (in a seeded order); the relay's answer to bram's queued
    sending is lost once in a dropped connection and he gets it by asking again; 1003 merges
    on anna's phone and 1006 arrives there."""
    anna, bram = cast.techs["anna"], cast.techs["bram"]
    bram.link.drop_when(is_submit_answer)
    first, second = (anna, bram) if cast.rng.random() < 0.5 else (bram, anna)
    for tech in (first, second):
        tech.go_online()
        cast.log.add(tech.name, "signal again")
        await cast.pace.pause(0.5)
    await until(bram.link.sprung.is_set, "the answer to bram's sending", cast.pace.timeout)
    cast.log.add(
        "bram", "the connection dropped just as the relay answered 1002: answer lost", "bad"
    )
    await bram.wait_accepted(cast.keys["1002"])
    record = (bram.field.device.submission(cast.keys["1002"]).answer or {}).get("record_id")
    cast.log.add("bram", f"asked again with the same key: 1002 accepted (record {record})", "good")
    wo = cast.wo("1003")
    for tech in (anna, bram):
        await tech.wait_synced()
    await until(lambda: _merged_1003(cast, anna), "1003 merged on anna's phone", cast.pace.timeout)
    workorder, _ = anna.field.workorder(wo)
    cast.log.add(
        "anna",
        f"1003 merged: {len(workorder.hours)} hours entries, notes of both, office description; "
        f"pressure {workorder.answers.get('pressure_bar')} (last writer wins)",
        "good",
    )
    await anna.wait_holds(cast.wo("1006"))
    cast.log.add("anna", "1006 arrived on her planning", "good")
    await cast.pace.pause()


def _merged_1003(cast: Cast, anna: Technician) -> bool:
    """Anna's replica of 1003 holds every ledger entry of it (hours and photos)."""
    wo = cast.wo("1003")
    workorder, _ = anna.field.workorder(wo)
    edits = cast.ledger.of(wo)
    hours = {e.key for e in edits if e.kind is EditKind.HOURS}
    photos = {e.key for e in edits if e.kind is EditKind.PHOTO}
    description = next(e.value for e in edits if e.kind is EditKind.DESCRIPTION)
    return (
        hours <= set(workorder.hours)
        and photos <= workorder.photo_hashes()
        and workorder.description == description
    )


async def chris_back(cast: Cast) -> None:
    """Chris gets signal: his unsent changes go out, also those to 1006, which was released
    from him meanwhile: his tablet takes no new edits for it."""
    chris, wo = cast.techs["chris"], cast.wo("1006")
    chris.go_online()
    cast.log.add("chris", "signal again")
    took = await chris.wait_synced()
    await until(
        lambda: _released(chris, wo),
        "1006 released on chris's tablet",
        cast.pace.timeout,
    )
    unsent = cast.facts.get("unsent_at_restart", 0)
    cast.log.add(
        "chris", f"the {unsent} changes made before the restart synced in {took:.1f} s", "good"
    )
    cast.log.add(
        "chris",
        "1006 was reassigned while he was offline: his preparation went to anna's copy; "
        "the tablet takes no new edits for it",
        "good",
    )
    await cast.pace.pause()


def _released(tech: Technician, wo: str) -> bool:
    assignment = tech.field.planning().workorders.get(wo)
    return assignment is not None and assignment.released
