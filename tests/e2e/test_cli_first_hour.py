"""The first hour at the command line, with real processes: ``oms up`` refusing to start twice, ``oms status``,
``oms down``, pid files written and removed by ``oms serve``, stale ones cleaned; ``oms order place``'s exit
codes and replays; ``--json``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from system import System

from oms.auth.tokens import customer_token
from oms.cli.supervisor import free_ports
from oms.pidfile import alive

NAMES = ("order", "inventory", "payment")


def oms(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oms", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def pids(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.glob("*.pid"))}


@pytest.fixture
def running_up(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """``oms up --port 0`` (any free ports, recorded in the data dir), in a data dir holding stale pid
    files (dead pids) to begin with."""
    data = tmp_path / "oms"
    data.mkdir()
    stale = dead_pid()
    for name in ("inventory", "up"):
        (data / f"{name}.pid").write_text(f"{stale}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "oms", "up", "--data-dir", str(data), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # a terminal of its own: Ctrl-C is SIGINT to its process group
    )  # fmt: skip
    try:
        wait_for(lambda: oms("status", "--data-dir", str(data)).returncode == 0 or process.poll() is not None, 60)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        yield data, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def test_up_twice_refuses_status_shows_it_down_stops_it(running_up: tuple[Path, subprocess.Popen[str]]) -> None:
    data, process = running_up
    ports = json.loads((data / "ports.json").read_text())
    assert set(ports) == set(NAMES) and len(set(ports.values())) == 3
    before = pids(data)
    assert set(before) == {"order.pid", "inventory.pid", "payment.pid", "up.pid"}
    assert before["up.pid"] == f"{process.pid}\n"
    # What oms up made is its owner's alone (the stale pid files the test wrote keep their mode).
    made = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir() if p.name != "inventory.pid"}
    assert {"auth-key.json", "order.db", "payment.db", "order.pid", "payment-audit.log"} <= set(made), made
    assert set(made.values()) == {0o600}, made

    again = oms("up", "--data-dir", str(data))
    assert again.returncode == 1
    assert "oms is already running" in again.stdout
    for name in NAMES:
        pid = before[f"{name}.pid"].strip()
        assert f"{name:<10} pid {pid}  port {ports[name]}  answering" in again.stdout
    assert "address already in use" not in again.stdout + again.stderr
    assert "oms is up" not in again.stdout
    assert pids(data) == before  # not touched

    # Another data dir, another key: the ports answer, but not as its services.
    other = oms("up", "--data-dir", str(data.parent / "other"), "--port", str(ports["order"]))
    assert other.returncode == 1
    assert f"port {ports['order']} (order) is in use by another program" in other.stdout
    assert "stop it with: oms down" not in other.stdout  # it would find nothing to stop here
    assert not (data.parent / "other").exists()  # nothing written: no directory, no key, no pid file

    status = oms("status", "--data-dir", str(data), env={**os.environ, "COLUMNS": "200"})  # rows unfolded
    assert status.returncode == 0, status.stdout
    for name in NAMES:
        row = next(line for line in status.stdout.splitlines() if line.startswith(f"{name} "))
        cells = re.split(r"\s{2,}", row.strip())
        assert cells[:4] == [name, "up", before[f"{name}.pid"].strip(), str(ports[name])]
        assert cells[4] == str((data / f"{name}.db").resolve())
    assert f"started by oms up (pid {process.pid})" in status.stdout
    # The client commands find the services where oms up started them, through the data dir.
    listed = oms("orders", "--json", env={**os.environ, "OMS_DATA_DIR": str(data)})
    assert listed.returncode == 0 and set(json.loads(listed.stdout)) == {"items", "next"}, listed.stderr

    down = oms("down", "--data-dir", str(data))
    assert down.returncode == 0, down.stdout
    assert f"stopped oms up (pid {process.pid})" in down.stdout
    for name in NAMES:
        assert f"stopped {name} (pid {before[f'{name}.pid'].strip()})" in down.stdout
    assert process.wait(5) == 0
    output = process.stdout.read() if process.stdout else ""
    assert "removed a stale pid file" in output  # what was there before it started
    assert "Stopping" in output and "exited" not in output
    # The terminal holds oms up's own lines; the services' go to their log files (oms logs shows them).
    assert "Uvicorn running" not in output and "Application startup" not in output
    assert output.index("oms is up") < output.index("Try: oms order place")
    assert {f"{name}.log" for name in NAMES} <= {p.name for p in data.iterdir()}
    shown = oms("logs", "--data-dir", str(data), "-n", "1000")
    assert shown.returncode == 0 and "Uvicorn running" in shown.stdout, shown.stdout
    assert pids(data) == {}

    nothing = oms("down", "--data-dir", str(data))
    assert nothing.returncode == 0
    assert "oms is not running" in nothing.stdout
    stopped = oms("status", "--data-dir", str(data))
    assert stopped.returncode == 1
    assert stopped.stdout.count(" down ") == 3


def test_ctrl_c_stops_order_service_before_the_services_it_calls(
    running_up: tuple[Path, subprocess.Popen[str]],
) -> None:
    """Ctrl-C in oms up's terminal reaches oms up alone (not its services at once): it stops
    OrderService, waits for it (its last sagas still call the other two), then the others."""
    data, process = running_up
    service_pids = {name: int(pids(data)[f"{name}.pid"]) for name in NAMES}
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    gone: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(gone) < len(NAMES) and time.monotonic() < deadline:
        for name, pid in service_pids.items():
            if name not in gone and not alive(pid):
                gone[name] = time.monotonic()
        time.sleep(0.002)
    assert process.wait(30) == 0
    assert set(gone) == set(NAMES), gone
    assert gone["order"] < gone["inventory"] and gone["order"] < gone["payment"], gone
    assert pids(data) == {}


def test_stale_pid_files_are_reported_and_cleaned(tmp_path: Path) -> None:
    stale = dead_pid()
    (tmp_path / "payment.pid").write_text(f"{stale}\n")
    env = {**os.environ, "OMS_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    status = oms("status", env=env)
    assert status.returncode == 1
    row = next(line for line in status.stdout.splitlines() if line.startswith("payment "))
    assert re.split(r"\s{2,}", row.strip())[:4] == ["payment", "down (stale pid file)", str(stale), "8002"]  # never up
    assert f"stale pid file: {tmp_path / 'payment.pid'} holds pid {stale}, which is not running" in status.stdout
    assert (tmp_path / "payment.pid").exists()  # status reports, never cleans

    down = oms("down", env=env)
    assert down.returncode == 0
    assert f"removed a stale pid file: {tmp_path / 'payment.pid'} (pid {stale} is not running)" in down.stdout
    assert "oms is not running" in down.stdout
    assert not (tmp_path / "payment.pid").exists()


def test_serve_writes_its_pid_file_and_removes_it_when_stopped(tmp_path: Path) -> None:
    first_port, second_port = free_ports(2)
    env = {**os.environ, "OMS_LOG_LEVEL": "warning"}

    def serve(port: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "oms", "serve", "inventory", "--port", str(port), "--data-dir", str(tmp_path)]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    pid_file = tmp_path / "inventory.pid"
    first = serve(first_port)
    replica = None
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text() == f"{first.pid}\n")
        # A replica on another port and the same data dir leaves the first one's pid file as it is.
        replica = serve(second_port)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", second_port)) == 0)
        assert pid_file.read_text() == f"{first.pid}\n"
        replica.send_signal(signal.SIGTERM)
        assert replica.wait(20) == 0
        assert pid_file.read_text() == f"{first.pid}\n"

        # oms down stops a service oms serve started, from its pid file.
        down = oms("down", "--data-dir", str(tmp_path))
        assert down.returncode == 0
        assert f"stopped inventory (pid {first.pid})" in down.stdout
        assert first.wait(5) == 0
        assert not pid_file.exists()
    finally:
        for process in (first, replica):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_a_killed_service_leaves_a_stale_pid_file_that_serve_takes_over(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = {**os.environ, "OMS_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "oms", "serve", "payment", "--port", str(port), "--data-dir", str(tmp_path)]
    pid_file = tmp_path / "payment.pid"
    killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: pid_file.exists())
    killed.kill()
    killed.wait()
    assert pid_file.read_text() == f"{killed.pid}\n"  # kill -9: no clean stop, the file stays
    again = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pid_file.read_text() == f"{again.pid}\n")
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(20)
    assert not pid_file.exists()


# -- oms order place: exit codes, replays, --json ----------------------------------------------------------------


def client(s: System, *args: str) -> subprocess.CompletedProcess[str]:
    return oms(*args, "--url", s.url("order"), "--token", s.token)


def test_place_exit_codes_and_replays(shared_system: System) -> None:
    s = shared_system
    s.put_item("CLI-1", 50, unit_price=500)
    s.put_item("CLI-LAST", 1, unit_price=500)

    placed = client(s, "order", "place", "--item", "CLI-1")  # a SKU alone: one unit
    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert "PLACED" in placed.stdout and "replayed" not in placed.stdout
    assert "5.00 USD" in placed.stdout

    declined = client(s, "order", "place", "--item", "CLI-1:1", "--payment-method", "pm_card_chargeDeclined")
    assert declined.returncode == 3
    assert "PAYMENT_FAILED" in declined.stdout and "card_declined" in declined.stdout

    assert client(s, "order", "place", "--item", "CLI-LAST:1").returncode == 0
    sold_out = client(s, "order", "place", "--item", "CLI-LAST:1")
    assert sold_out.returncode == 3
    assert "OUT_OF_STOCK" in sold_out.stdout

    refused = client(s, "order", "place", "--item", "NO-SUCH-SKU:1")
    assert refused.returncode == 1
    assert "422" in refused.stdout

    unreachable = oms("order", "place", "--item", "CLI-1:1", "--url", f"http://127.0.0.1:{free_ports(1)[0]}")
    assert unreachable.returncode == 1
    assert "cannot reach" in unreachable.stdout

    key = f"cli-{time.time_ns()}"
    first = client(s, "order", "place", "--item", "CLI-1:2", "--key", key)
    assert first.returncode == 0 and "replayed" not in first.stdout
    second = client(s, "order", "place", "--item", "CLI-1:2", "--key", key)
    assert second.returncode == 0
    assert "replayed" in second.stdout
    first_id = first.stdout.split()[1]
    assert first_id.startswith("ord_") and second.stdout.split()[1] == first_id

    key = f"cli-{time.time_ns()}"
    failed = client(
        s, "order", "place", "--item", "CLI-1:1", "--key", key, "--payment-method", "pm_card_chargeDeclined"
    )
    replayed_failed = client(
        s, "order", "place", "--item", "CLI-1:1", "--key", key, "--payment-method", "pm_card_chargeDeclined", "--json"
    )
    assert failed.returncode == replayed_failed.returncode == 3
    order = json.loads(replayed_failed.stdout)  # nothing else on stdout
    assert order["status"] == "PAYMENT_FAILED" and order["id"] == failed.stdout.split()[1]
    assert "Idempotent-Replayed: true" in replayed_failed.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_place_into_a_pipe_closed_early_keeps_its_exit_code(shared_system: System, as_json: bool) -> None:
    """``oms order place ... | head -c0``: the reader goes before the order is shown. The exit code
    still says how the order ended, and no traceback about the broken pipe."""
    s = shared_system
    s.put_item("CLI-PIPE", 50, unit_price=500)
    for method, code in (("pm_card_visa", 0), ("pm_card_chargeDeclined", 3)):
        command = [sys.executable, "-m", "oms", "order", "place", "--item", "CLI-PIPE:1", "--payment-method", method]
        command += ["--url", s.url("order"), "--token", s.token, *(["--json"] if as_json else [])]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None
        process.stdout.close()  # nobody reads what it prints
        _, errors = process.communicate(timeout=60)
        assert process.returncode == code, errors.decode()
        assert b"Traceback" not in errors and b"BrokenPipe" not in errors, errors.decode()


def test_item_needs_a_sku_and_a_quantity_after_a_colon(shared_system: System) -> None:
    for wrong in ("WIDGET-1:", ":2", "WIDGET-1:two"):
        answer = client(shared_system, "order", "place", "--item", wrong)
        assert answer.returncode == 2
        assert "write SKU or SKU:QUANTITY, e.g. WIDGET-1:2" in answer.stderr


def test_json_prints_the_services_answer_and_nothing_else(shared_system: System) -> None:
    s = shared_system
    s.put_item("CLI-JSON", 10, unit_price=700)
    placed = client(s, "order", "place", "--item", "CLI-JSON:1", "--json")
    assert placed.returncode == 0
    order = json.loads(placed.stdout)
    assert placed.stderr == ""

    shown = client(s, "order", "show", order["id"], "--json")
    assert json.loads(shown.stdout) == s.http.get(f"{s.url('order')}/orders/{order['id']}").json()

    listed = client(s, "orders", "--status", "PLACED", "--limit", "5", "--json")
    page = json.loads(listed.stdout)
    assert set(page) == {"items", "next"} and all(o["status"] == "PLACED" for o in page["items"])
    assert order["id"] in [o["id"] for o in page["items"]]

    items = oms("items", "--url", s.url("inventory"), "--token", s.token, "--limit", "1000", "--json")
    assert "CLI-JSON" in [item["sku"] for item in json.loads(items.stdout)["items"]]

    breakers = client(s, "breakers", "--json")
    assert set(json.loads(breakers.stdout)) == {"inventory", "payment"}

    audit = client(s, "audit", "--inventory-url", s.url("inventory"), "--payment-url", s.url("payment"), "--json")
    report = json.loads(audit.stdout)
    assert {"at", "clean", "orders", "payments", "reservations", "items", "findings"} <= set(report)
    assert audit.returncode == (0 if report["clean"] else 1)
    gone = f"http://127.0.0.1:{free_ports(1)[0]}"
    unread = client(s, "audit", "--inventory-url", gone, "--payment-url", s.url("payment"))
    assert unread.returncode == 2 and f"GET {gone}/" in " ".join(unread.stdout.split())  # which one failed

    missing = client(s, "order", "show", "ord_nosuchorder", "--json")
    assert missing.returncode == 1
    assert missing.stdout == "" and "404" in missing.stderr


def test_place_exits_4_while_the_order_is_pending(shared_system: System) -> None:
    s = shared_system
    s.put_item("CLI-PENDING", 5)
    s.pause("payment")  # SIGSTOP: the charge is sent and never answered, so its outcome is unknown
    try:
        pending = client(s, "order", "place", "--item", "CLI-PENDING:1")
    finally:
        s.resume("payment")
    assert pending.returncode == 4, pending.stdout + pending.stderr
    assert "PENDING" in pending.stdout and "payment_outcome_unknown" in pending.stdout


def test_a_customer_token_places_for_its_own_customer_and_statuses_take_any_case(shared_system: System) -> None:
    s = shared_system
    s.put_item("CLI-OWN", 10, unit_price=300)
    alice = customer_token(s.key, "alice", ttl=600)
    placed = oms(
        "order",
        "place",
        "--item",
        "CLI-OWN:1",
        "--json",
        "--url",
        s.url("order"),
        env={**os.environ, "OMS_TOKEN": alice},
    )
    assert placed.returncode == 0, placed.stderr
    assert json.loads(placed.stdout)["customer_id"] == "alice"  # not cust-demo, which alice may not order for

    as_admin = client(s, "order", "place", "--item", "CLI-OWN:1", "--json")
    assert as_admin.returncode == 0 and json.loads(as_admin.stdout)["customer_id"] == "cust-demo"

    listed = client(s, "orders", "--status", "placed", "--limit", "5", "--json")
    assert listed.returncode == 0, listed.stderr
    assert all(o["status"] == "PLACED" for o in json.loads(listed.stdout)["items"])
