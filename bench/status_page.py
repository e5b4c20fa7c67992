"""The public status page's build cost, by hand: `.venv/bin/python bench/status_page.py [--components N]
[--transitions T]`.

Starts an in-memory nx-27017, opens the service container, defines N components with T recorded
transitions each over the last 90 days, and times (server side, no HTTP) building `/status` cold (every
component's 90-day bars computed) and warm (bars reused), `summary.json`, and one component's 90-day
uptime (database read and computation apart).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.clock import utc_now  # noqa: E402
from app.runtime.container import close_runtime, open_runtime  # noqa: E402
from app.runtime.settings import Settings  # noqa: E402
from app.status.model import ServiceState, StatusCause, Transition  # noqa: E402
from app.statuspage import uptime as calc  # noqa: E402
from app.storage.embedded import EmbeddedMongo  # noqa: E402
from app.web import statuspage as web  # noqa: E402


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"


async def main(components: int, transitions: int) -> None:
    db = EmbeddedMongo("memory")
    uri = db.start()
    settings = Settings(
        mongodb_uri=uri,
        mongodb_db="bench_status_page",
        demo_data=False,
        status_probe_interval_seconds=3600,
        status_tick_seconds=3600,
        _env_file=None,  # type: ignore[call-arg]
    )
    runtime = await open_runtime(settings)
    try:
        services = runtime.services
        now = utc_now()
        snapshot = services.status.snapshot()
        step = timedelta(days=89) / transitions
        for i in range(components):
            await services.status_page.create_component({"name": f"c{i}", "group": "G" if i % 2 else None})
            for k in range(transitions):
                to = ServiceState.MAJOR_OUTAGE if k % 2 == 0 else ServiceState.OPERATIONAL
                at = now - timedelta(days=89) + k * step
                transition = Transition(
                    0,
                    f"c{i}",
                    ServiceState.OPERATIONAL,
                    to,
                    StatusCause.MANUAL,
                    None,
                    None,
                    at,
                    "bench",
                    snapshot,
                )
                await services.status._store.record(transition)
        config = web.PageConfig(enabled=True, cache_seconds=0)

        start = now - timedelta(days=90)
        read, compute = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            initial, changes = await services.status.timeline("c1", start, now)
            t1 = time.perf_counter()
            calc.days(calc.timeline(initial, changes, start, now), start, now)
            read.append(t1 - t0)
            compute.append(time.perf_counter() - t1)
        print(f"one component's 90 days ({transitions} changes): read {_ms(read)}; compute {_ms(compute)}")

        t0 = time.perf_counter()
        await web.status_html(services, config)
        print(f"/status cold ({components + 3} components): {(time.perf_counter() - t0) * 1000:.1f} ms")
        warm = []
        for _ in range(20):
            t0 = time.perf_counter()
            await web.status_html(services, config)
            warm.append(time.perf_counter() - t0)
        print(f"/status warm (bars reused): {_ms(warm)}")
        summary = web.json_builders(config)["summary.json"]
        built = []
        for _ in range(20):
            t0 = time.perf_counter()
            await summary(services)
            built.append(time.perf_counter() - t0)
        print(f"summary.json: {_ms(built)}")
    finally:
        await close_runtime(runtime)
        db.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--transitions", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.components, args.transitions))
