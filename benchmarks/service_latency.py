"""Latency of patient-view through the HTTP service: ``python -m benchmarks.service_latency``.

Starts the real service (``ipm-cds serve``, uvicorn) in its own process on a loopback port, once per
backend, and sends CDS Hooks patient-view requests built from the example Bundles of examples/fhir/
(prefetch answered from each Bundle, as a CDS client would). Reports p50 and p99 round-trip latency,
and requests per second, for 1 and 16 concurrent clients (each client a thread with its own keep-alive
connection). Every response is checked: 200 with cards.

Numbers depend on the machine, and the clients share one Python process (so at 16 clients part of the
time is the clients' own). The durable backend serialises evaluations on one process-wide lock
(docs/engine.md): concurrency is served by queueing, and scales with processes, not threads.
Results are printed and written to benchmarks/results/service_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLES = ROOT / "examples" / "fhir"
AS_OF = "2025-06-02"
HOST = "127.0.0.1"  # loopback only
PATH = "/cds-services/ipm-cds-patient-view"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def requests_from_examples(templates: dict[str, str]) -> list[dict[str, Any]]:
    """One patient-view request body per example Bundle."""
    from ipm_cds.interop.fhir import prefetch_from_bundle

    bodies = []
    for path in sorted(EXAMPLES.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        bodies.append(
            {
                "hook": "patient-view",
                "hookInstance": "",
                "context": {"userId": "Practitioner/bench", "patientId": pid},
                "prefetch": prefetch_from_bundle(bundle, templates, pid),
            }
        )
    return bodies


class Service:
    """``ipm-cds serve`` in a child process, on a free loopback port."""

    def __init__(self, backend: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="ipm-cds-bench-")
        port_file = Path(self.tmp.name) / "port"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ipm_cds",
                "serve",
                "--host",
                HOST,
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--as-of",
                AS_OF,
                "--backend",
                backend,
                "--feedback-log",
                str(Path(self.tmp.name) / "feedback.jsonl"),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "ipm-cds serve exited")
            if time.monotonic() > deadline:
                raise RuntimeError("ipm-cds serve did not start")
            time.sleep(0.05)
        self.base = f"http://{HOST}:{int(port_file.read_text())}"
        with httpx.Client(base_url=self.base, trust_env=False, timeout=30) as http:
            while True:
                try:
                    self.templates: dict[str, str] = http.get("/cds-services").json()["services"][0]["prefetch"]
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.tmp.cleanup()


WORST = Path(__file__).resolve().parent / "data" / "sij100.patient-view.json"
"""The worst valid patient of the bounded-evaluation report, as a CDS client sent it: 100 therapeutic SIJ
injections as FHIR Procedures (it once took the service from 92 to 2.8 requests/s)."""


def run_clients(
    base: str,
    bodies: list[dict[str, Any]],
    clients: int,
    per_client: int,
    warmup: int,
    adversary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``clients`` threads, each sending ``per_client`` timed requests after ``warmup`` untimed ones; with
    ``adversary``, one more client sends that request over and over while they run (not timed with them)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1 + (adversary is not None))
    done = threading.Event()
    adversary_times: list[float] = []

    def attacker() -> None:
        assert adversary is not None
        with httpx.Client(base_url=base, trust_env=False, timeout=120) as http:
            barrier.wait()
            while not done.is_set():
                body = dict(adversary, hookInstance=str(uuid.uuid4()))
                start = time.perf_counter()
                response = http.post(
                    PATH, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
                )
                adversary_times.append(time.perf_counter() - start)
                if response.status_code != 200 or not response.json().get("cards"):
                    errors.append(f"worst patient: {response.status_code}: {response.text[:200]}")

    def worker(i: int) -> None:
        # TCP_NODELAY, as the service sets it on its side: a request written as headers then body must not
        # wait for the server's delayed ACK (Nagle, ~40 ms a request).
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(base_url=base, trust_env=False, timeout=60, transport=transport) as http:
            payloads = [json.dumps(b).encode() for b in bodies]

            def one(n: int) -> float:
                body = json.loads(payloads[(i + n) % len(payloads)])
                body["hookInstance"] = str(uuid.uuid4())
                data = json.dumps(body).encode()
                start = time.perf_counter()
                response = http.post(PATH, content=data, headers={"Content-Type": "application/json"})
                elapsed = time.perf_counter() - start
                if response.status_code != 200 or not response.json().get("cards"):
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                return elapsed

            for n in range(warmup):
                one(n)
            barrier.wait()
            for n in range(per_client):
                latencies[i].append(one(warmup + n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    extra = threading.Thread(target=attacker) if adversary is not None else None
    for t in [*threads, *([extra] if extra else [])]:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done.set()
    if extra is not None:
        extra.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    flat = [x for row in latencies for x in row]
    return {
        "clients": clients,
        "requests": len(flat),
        "p50_ms": round(pct(flat, 0.50) * 1e3, 2),
        "p99_ms": round(pct(flat, 0.99) * 1e3, 2),
        "mean_ms": round(statistics.fmean(flat) * 1e3, 2),
        "requests_per_s": round(len(flat) / wall, 1),
        **(
            {
                "worst_requests": len(adversary_times),
                "worst_p50_ms": round(pct(adversary_times, 0.50) * 1e3, 2),
                "worst_max_ms": round(max(adversary_times) * 1e3, 2),
            }
            if adversary is not None and adversary_times
            else {}
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="durable,python", help="comma-separated (default: durable,python)")
    parser.add_argument("--clients", default="1,16", help="comma-separated concurrency levels (default: 1,16)")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per client first")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/")
    parser.add_argument(
        "--worst",
        action="store_true",
        help="at the highest concurrency, run again with one more client sending the worst valid patient",
    )
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "benchmark": "service_latency",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "examples": sorted(p.stem for p in EXAMPLES.glob("*.json")),
        "runs": [],
    }
    print(f"patient-view over HTTP (uvicorn, loopback), {len(results['examples'])} example patients rotating")
    print(f"{'backend':8} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'req/s':>8}")
    for backend in args.backends.split(","):
        service = Service(backend)
        try:
            bodies = requests_from_examples(service.templates)
            levels = [int(c) for c in args.clients.split(",")]
            worst = json.loads(WORST.read_text(encoding="utf-8")) if args.worst else None
            plan = [(c, None) for c in levels] + ([(max(levels), worst)] if worst is not None else [])
            for clients, adversary in plan:
                per_client = max(1, args.requests // clients)
                run = {
                    "backend": backend,
                    "with_worst_patient": adversary is not None,
                    **run_clients(service.base, bodies, clients, per_client, args.warmup, adversary),
                }
                results["runs"].append(run)
                extra = (
                    f"  + 1 client sending the worst patient ({run.get('worst_requests', 0)} requests, "
                    f"p50 {run.get('worst_p50_ms', '-')} ms)"
                    if adversary is not None
                    else ""
                )
                print(
                    f"{backend:8} {run['clients']:>7} {run['requests']:>8} {run['p50_ms']:>8.2f} "
                    f"{run['p99_ms']:>8.2f} {run['mean_ms']:>8.2f} {run['requests_per_s']:>8.1f}{extra}"
                )
        finally:
            service.close()
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / "service_latency.json"
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
