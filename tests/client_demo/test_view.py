"""The demo's output: plain lines when the output is not a terminal, the live view when it is."""

from __future__ import annotations

import io
import re

from rich.console import Console

from client_demo.__main__ import choose_view, parse_args
from client_demo.day import DayClock, EventLog
from client_demo.relay import RelayState
from client_demo.verify import Row, Verdict
from client_demo.view import Board, LiveView, PlainView

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def board() -> Board:
    return Board(clock=DayClock(), relay=RelayState(where="127.0.0.1:8765", up=True, pid=42))


def test_output_that_is_not_a_terminal_gets_plain_lines() -> None:
    pipe = Console(file=io.StringIO())  # what CI and `| tee` give
    assert isinstance(choose_view(parse_args([]), board(), pipe), PlainView)
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(choose_view(parse_args([]), board(), terminal), LiveView)
    assert isinstance(choose_view(parse_args(["--plain"]), board(), terminal), PlainView)


def test_plain_lines_are_events_steps_state_and_a_summary_without_escapes() -> None:
    out = io.StringIO()
    the_board = board()
    view = PlainView(the_board, out)
    log = EventLog(the_board.clock, listeners=[view.event])
    view.start()
    view.step("the relay is killed with SIGKILL")
    log.add("relay", "SIGKILL after 8 of 22 edits", "bad")
    log.add("bram", "1002 accepted", "good")
    view.step("end of the day")  # the state did not change: not repeated
    row = Row("1001", "anna+bram", 14, 14, "2", "J. de Vries", "1/1", "sent", True)
    verdict = Verdict(rows=[row])
    view.summary(verdict, ["run: 7 s, seed 7"])
    view.line("nothing lost")
    text = out.getvalue()
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert "07:30 X relay   SIGKILL after 8 of 22 edits" in lines
    assert "07:30 + bram    1002 accepted" in lines
    assert "== 07:30 the relay is killed with SIGKILL" in lines
    assert sum(line.startswith("   relay up at 127.0.0.1:8765") for line in lines) == 1
    assert "1001        anna+bram  14/14  2       J. de Vries  1/1      sent" in lines
    assert lines[-1] == "nothing lost"
    assert all(line == line.rstrip() for line in lines)


def test_the_live_view_draws_devices_relay_and_events() -> None:
    out = io.StringIO()
    the_board = board()
    view = LiveView(the_board, Console(file=out, force_terminal=True, width=120))
    log = EventLog(the_board.clock, listeners=[view.event])
    view.start()
    log.add("anna", "1001 sent and accepted", "good")
    view.tick()
    the_board.relay.up = False
    view.tick()
    view.stop()
    text = ANSI.sub("", out.getvalue())
    for part in ("devices", "submissions", "relay up at 127.0.0.1:8765", "relay DOWN"):
        assert part in text
    assert "1001 sent and accepted" in text
