"""Run the standard benchmark scenarios and write their figures to BENCHMARKS.md.

    python benchmarks/run.py            # every scenario (about five minutes on two cores)
    python benchmarks/run.py --quick    # fewer orders, for a look

Each scenario starts its own services in a temporary directory (`oms bench --spawn`), so nothing
else should be running on the machine. The PostgreSQL scenarios start a PostgreSQL server from the
machine's binaries, as the test suite does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console

from oms.cli.bench import Bench, Plan, Report, spawn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

GOALS = {
    "sqlite": "at least 1,000 orders/s, p99 at most 150 ms",
    "declined": "(no goal of its own: compensations run)",
    "fallback": "at least 80% of the all-succeed rate",
    "postgres": "at least 600 orders/s",
    "tracing": "at most 15% below sqlite-all-succeed (run alternately with it)",
    "recovery": "1,000 pending sagas terminal within 10 s of the restart",
}


@contextlib.contextmanager
def otlp_receiver() -> Iterator[str]:
    """An OTLP/HTTP endpoint that accepts spans and drops them (tests/otlp_receiver.py), in a process
    of its own, for the tracing scenario."""
    from oms.cli.supervisor import free_ports

    [port] = free_ports(1)
    command = [sys.executable, str(ROOT / "tests" / "otlp_receiver.py"), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def run_plan(
    console: Console,
    plan: Plan,
    *,
    env: dict[str, str] | None = None,
    inventory_down: bool = False,
    database_urls: Callable[[], dict[str, str]] | None = None,
    server_pid: int | None = None,
) -> Report:
    """One run on a fresh system (``database_urls`` makes fresh PostgreSQL databases for it)."""
    with tempfile.TemporaryDirectory(prefix="oms-bench-") as scratch:
        system = spawn(Path(scratch), env or {}, database_urls() if database_urls else None)
        try:
            also = {"database": server_pid} if server_pid else None
            runner = Bench(system.urls, plan, console, token=system.token, also=also)

            def kill_inventory() -> None:
                system.kill("inventory")
                runner.alive.discard("inventory")

            return asyncio.run(runner.run(kill_inventory if inventory_down else None))
        finally:
            system.stop()


async def _post_async(urls: dict[str, str], count: int, concurrency: int, token: str) -> None:
    bench = Bench(urls, Plan(), Console(), token=token)
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {token}"}) as session:
        await bench.seed(session)
        queue = iter(range(count))
        headers = {"content-type": "application/json", "prefer": "respond-async"}

        async def worker() -> None:
            for index in queue:
                async with session.post(urls["order"] + "/orders", data=orjson.dumps(bench.body(index)),
                                        headers=headers) as response:  # fmt: skip
                    assert response.status == 202, await response.text()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _pending(url: str, token: str) -> int:
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {token}"}) as session:
        total = 0
        page_url = f"{url}/orders?status=PENDING&limit=1000"
        while True:
            async with session.get(page_url) as response:
                page = orjson.loads(await response.read())
            total += len(page["items"])
            if page["next"] is None:
                return total
            page_url = f"{url}/orders?status=PENDING&limit=1000&next={page['next']}"


def recovery(console: Console, sagas: int, database_urls: dict[str, str] | None = None) -> dict[str, Any]:
    """Leave ``sagas`` sagas PENDING (PaymentService stopped, OrderService killed), restart
    OrderService, and time how long until every one is terminal."""
    with tempfile.TemporaryDirectory(prefix="oms-bench-") as scratch:
        system = spawn(Path(scratch), {}, database_urls)
        try:
            payment = system.processes["payment"]
            payment.send_signal(signal.SIGSTOP)
            asyncio.run(_post_async(system.urls, sagas, 50, system.token))
            left = asyncio.run(_pending(system.urls["order"], system.token))
            system.kill("order")
            payment.send_signal(signal.SIGCONT)
            began = time.monotonic()
            system.start("order")
            while asyncio.run(_pending(system.urls["order"], system.token)):
                time.sleep(0.05)
            seconds = time.monotonic() - began
        finally:
            system.stop()
    console.print(f"recovery: {left} pending sagas terminal {seconds:.2f} s after the restart")
    return {"pending_at_kill": left, "seconds_to_terminal": round(seconds, 2)}


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory = int(meminfo.readline().split()[1]) // 1024 // 1024
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{memory} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": commit.stdout.strip() or "unknown",
        **{name: version(name) for name in ("fastapi", "uvicorn", "aiohttp", "asyncpg", "pydantic")},
    }


def _figure(services: dict[str, Any], service: str, key: str) -> str:
    return str(services[service][key]) if service in services else "-"


def _stolen(report: dict[str, Any]) -> str:
    return f"{report['stolen']:.0%}" if "stolen" in report else "-"


def _loop(report: dict[str, Any]) -> str:
    return f"{report['calibration_ms']:.0f}" if report.get("calibration_ms") else "-"


def _goal(scenario: str) -> str:
    return GOALS["declined"] if "declined" in scenario else GOALS.get(scenario.split("-")[0], "")


def _runs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return list(entry["runs"]) if "runs" in entry else [entry]


def median_run(entry: dict[str, Any]) -> dict[str, Any]:
    """The run with the median orders/s (a JSON written before runs were repeated is one run)."""
    runs = sorted(_runs(entry), key=lambda r: r["orders_per_second"])
    return runs[(len(runs) - 1) // 2]


def markdown(results: dict[str, Any], info: dict[str, str], command: str) -> str:
    repeats = max((len(_runs(r)) for n, r in results.items() if n != "recovery"), default=1)
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}. Every figure is measured; the",
        "script writes this file. Three services and the load generator share the machine; 50 concurrent",
        "clients; default settings (durable commits: SQLite `synchronous=FULL`, PostgreSQL 15 as installed,",
        f"`fsync=on`). Each scenario ran {repeats} times on a fresh system; a row shows the run with the median",
        "rate, and the rates of all runs. These machines are virtual and their speed varies with their",
        "neighbours: *loop ms* is how long a fixed Python loop took just before the median run (the lower,",
        "the faster the machine was), *stolen* the share of CPU time the host gave to others during it. A",
        "slow machine lowers every rate and raises every CPU cost, whatever the code.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in info.items()],
        "",
        "## Throughput and latency",
        "",
        "| scenario | orders | orders/s | every run | loop ms | stolen | p50 ms | p95 ms | p99 ms | max ms | statuses "
        "| CPU µs an order (order / inventory / payment / load [/ PostgreSQL server]) "
        "| peak RSS MB (order / inventory / payment) | goal |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for name, entry in results.items():
        if name == "recovery":
            continue
        report = median_run(entry)
        orders = report["plan"]["orders"]
        services = report["services"]
        cpu = " / ".join(
            f"{services[s]['cpu_seconds'] / orders * 1e6:.0f}" if s in services else "-"
            for s in ("order", "inventory", "payment")
        )
        cpu += f" / {report['load_generator']['cpu_us_per_order']:.0f}"
        if "database" in services:
            cpu += f" / {services['database']['cpu_seconds'] / orders * 1e6:.0f}"
        rss = " / ".join(_figure(services, s, "peak_rss_mb") for s in ("order", "inventory", "payment"))
        statuses = ", ".join(f"{k} {v}" for k, v in report["statuses"].items())
        every = " / ".join(f"{r['orders_per_second']:.0f}" for r in _runs(entry))
        lat = report["latency_ms"]
        lines.append(
            f"| {name} | {orders} | {report['orders_per_second']:.0f} | {every} | {_loop(report)} | {_stolen(report)} "
            f"| {lat['p50']} | {lat['p95']} "
            f"| {lat['p99']} | {lat['max']} | {statuses} | {cpu} | {rss} | {_goal(name)} |"
        )
    if "recovery" in results:
        r = results["recovery"]
        every = " / ".join(f"{x['seconds_to_terminal']}" for x in r.get("runs", [r]))
        lines += [
            "",
            "## Recovery",
            "",
            f"{r['pending_at_kill']} sagas left PENDING by a killed OrderService (PaymentService stopped while they",
            f"ran) were all terminal **{r['seconds_to_terminal']} s** (median; every run: {every} s) after",
            f"OrderService was started again (start-up included). Goal: {GOALS['recovery']}.",
        ]
    lg = [median_run(r)["load_generator"]["cpu_us_per_order"] for n, r in results.items() if n != "recovery"]
    if lg:
        lines += [
            "",
            "## The load generator",
            "",
            f"`oms bench` spent {min(lg):.0f} to {max(lg):.0f} µs of CPU per order (a keep-alive connection per",
            "client, answers parsed by httptools, bodies by orjson), of the two cores the services share; its",
            "figures are in the CPU column above.",
        ]
    analysis = Path(__file__).with_name("analysis.md")
    if analysis.exists():
        lines += ["", analysis.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer orders")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario (the median is shown)")
    parser.add_argument("--render", action="store_true", help="rewrite the Markdown from the last run's JSON")
    args = parser.parse_args()
    console = Console()
    if args.render:
        saved = orjson.loads(args.output.with_suffix(".json").read_bytes())
        args.output.write_text(markdown(saved["results"], saved["machine"], saved["command"]))
        return 0
    orders = 1500 if args.quick else 6000
    results: dict[str, Any] = {}

    def alternately(*scenarios: tuple[str, Plan, dict[str, Any]]) -> None:
        """Each scenario ``args.repeat`` times, taking turns: those compared meet the same machine."""
        for run in range(args.repeat):
            for name, plan, kwargs in scenarios:
                console.rule(f"{name} ({run + 1} of {args.repeat})")
                report = run_plan(console, plan, **kwargs)
                console.print(f"{name}: {report.orders_per_second:.0f} orders/s, p99 {report.latency_ms['p99']} ms")
                results.setdefault(name, {"runs": []})["runs"].append(asdict(report))

    def scenario(name: str, plan: Plan, **kwargs: Any) -> None:
        alternately((name, plan, kwargs))

    with otlp_receiver() as endpoint:
        traced = {"env": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}}
        alternately(("sqlite-all-succeed", Plan(orders=orders), {}), ("tracing-on", Plan(orders=orders), traced))
    scenario("declined-30pct", Plan(orders=orders, decline_rate=0.3))
    scenario("fallback-inventory-down", Plan(orders=orders), inventory_down=True)
    scenario("sqlite-async", Plan(orders=orders, respond_async=True))
    if not args.skip_postgres:
        import pgserver

        server = pgserver.start(pgserver.find_bindir())
        try:
            databases = itertools.count()

            def fresh() -> dict[str, str]:
                number = next(databases)
                return {s: server.create_database(f"bench{number}_{s}") for s in ("order", "inventory", "payment")}

            postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
            scenario("postgres-all-succeed", Plan(orders=orders), database_urls=fresh, server_pid=postmaster)
            scenario(
                "postgres-declined-30pct",
                Plan(orders=orders, decline_rate=0.3),
                database_urls=fresh,
                server_pid=postmaster,
            )
        finally:
            server.stop()
    console.rule("recovery")
    recoveries = sorted((recovery(console, 1000) for _ in range(args.repeat)), key=lambda r: r["seconds_to_terminal"])
    results["recovery"] = {**recoveries[(len(recoveries) - 1) // 2], "runs": recoveries}
    command = (
        "python benchmarks/run.py"
        + (" --quick" if args.quick else "")
        + (f" --repeat {args.repeat}" if args.repeat != 3 else "")
    )
    info = machine()
    args.output.write_text(markdown(results, info, command))
    saved = {"command": command, "machine": info, "results": results}
    args.output.with_suffix(".json").write_bytes(orjson.dumps(saved, option=orjson.OPT_INDENT_2))
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
