#!/usr/bin/env python3
"""Fixed, sequential request sequence for benches/callgrind.sh.

Drives a sessiond that runs under `valgrind --tool=callgrind` (pid given) over one keep-alive
HTTP/1.1 connection, one request at a time, so the sequence is the same on every run whatever
else the machine does. For each measured phase it zeroes callgrind's counters
(`callgrind_control --zero`), sends the phase's requests, waits `--settle` seconds for work that
trails the last answer, and dumps (`callgrind_control --dump=<phase>`), so start-up, seeding and
warm-up are never counted. Every answer is checked; any unexpected status aborts the run.

Phases (N = --requests):
  warm-up   before each phase: every one of its sessions used once (a refresh activates the
            actor; a first /me checks the signature and fills the caches), then --warmup
            more requests of that kind;
  refresh   N durable refreshes, round-robin over the refresh sessions, each presenting the
            session's newest token (a plain rotation);
  me        N GET /v1/auth/me, round-robin over the read sessions' access tokens;
  activate  (with --activate-seed) A first GET /v1/auth/me, each on a session never used
            before: the actor started from the store, the token's signature checked, the
            account's profile read — what a request costs when its session's actor had
            passivated. Warmed up by --activate-warmup other first requests of the same kind.

Prints one JSON object: {"phases": {name: {"requests": N, "dump": file}}}.
"""
import argparse
import glob
import http.client
import json
import os
import signal
import subprocess
import sys
import time


def load(path, limit):
    rows = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("refresh_token"):
                rows.append(row)
            if len(rows) == limit:
                break
    if len(rows) < limit:
        sys.exit(f"callgrind_drive: {path} has {len(rows)} sessions, {limit} needed")
    return rows


def complete(path):
    """A dump is complete once its closing totals line is written."""
    try:
        with open(path) as f:
            return any(line.startswith("totals:") for line in f)
    except OSError:
        return False


class Client:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=120)

    def call(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        self.conn.request(method, path, body=data, headers=h)
        resp = self.conn.getresponse()
        payload = resp.read()
        return resp.status, payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--refresh-seed", required=True)
    ap.add_argument("--read-seed", required=True)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--activate-seed", help="sessions for the activate phase (one request each)")
    ap.add_argument("--activations", type=int, default=500)
    ap.add_argument("--activate-warmup", type=int, default=50)
    ap.add_argument("--dump-dir", required=True)
    ap.add_argument("--mode", choices=("callgrind", "perf"), default="callgrind",
                    help="perf: sessiond runs natively; `perf record` (DWARF call graphs) is "
                         "attached for each phase instead, writing DUMP_DIR/perf-<phase>.data")
    args = ap.parse_args()

    hostport = args.url.split("://", 1)[1]
    host, port = hostport.rsplit(":", 1)
    client = Client(host, int(port))
    refresh_rows = load(args.refresh_seed, args.sessions)
    read_rows = load(args.read_seed, args.sessions)
    tokens = [r["refresh_token"] for r in refresh_rows]
    bearers = [{"Authorization": "Bearer " + r["access_token"]} for r in read_rows]
    state = {"i": 0}

    def refresh_once():
        i = state["i"] % len(tokens)
        state["i"] += 1
        status, payload = client.call(
            "POST", "/v1/auth/tokens/refresh", {"refresh_token": tokens[i]})
        if status != 200:
            sys.exit(f"callgrind_drive: refresh answered {status}: {payload[:300]!r}")
        tokens[i] = json.loads(payload)["refresh_token"]

    me_state = {"i": 0}

    def me_once():
        i = me_state["i"] % len(bearers)
        me_state["i"] += 1
        status, payload = client.call("GET", "/v1/auth/me", headers=bearers[i])
        if status != 200:
            sys.exit(f"callgrind_drive: /me answered {status}: {payload[:300]!r}")

    fresh = []
    if args.activate_seed:
        fresh = [{"Authorization": "Bearer " + r["access_token"]}
                 for r in load(args.activate_seed, args.activate_warmup + args.activations)]

    def activate_once():
        status, payload = client.call("GET", "/v1/auth/me", headers=fresh.pop(0))
        if status != 200:
            sys.exit(f"callgrind_drive: first /me answered {status}: {payload[:300]!r}")

    def control(*flags):
        subprocess.run(["callgrind_control", *flags, str(args.pid)], check=True,
                       stdout=subprocess.DEVNULL)

    # Each phase is warmed up right before it is measured: every actor activated, every access
    # token seen once, then a steady stretch. (Warming both up front would let the verified-token
    # cache forget the /me tokens while the slow refresh phase runs under valgrind.)
    def warm_up(step, n, extra=None):
        for _ in range(n + (args.warmup if extra is None else extra)):
            step()
        time.sleep(args.settle)

    # (name, step, warm-up uses before the extra warm-up, extra warm-up, measured requests)
    plan = [("refresh", refresh_once, len(tokens), None, args.requests),
            ("me", me_once, len(bearers), None, args.requests)]
    if fresh:
        plan.append(("activate", activate_once, 0, args.activate_warmup, args.activations))

    phases = {}
    if args.mode == "perf":
        for name, step, n, extra, requests in plan:
            warm_up(step, n, extra)
            data = os.path.join(args.dump_dir, f"perf-{name}.data")
            rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999",
                                    "--call-graph", "dwarf,16384", "-p", str(args.pid),
                                    "-o", data], stdout=subprocess.DEVNULL)
            time.sleep(1.0)  # perf attaches to every thread before the first request
            for _ in range(requests):
                step()
            rec.send_signal(signal.SIGINT)
            rec.wait()
            phases[name] = {"requests": requests, "perf_data": data}
        print(json.dumps({"phases": phases}))
        return
    for name, step, n, extra, requests in plan:
        warm_up(step, n, extra)
        before = set(glob.glob(os.path.join(args.dump_dir, "callgrind.out.*")))
        control("--zero")
        t0 = time.monotonic()
        for _ in range(requests):
            step()
        wall = time.monotonic() - t0
        time.sleep(args.settle)
        control(f"--dump={name}")
        # The dump is written by the valgrind process: wait until the new file appears.
        new = []
        for _ in range(600):
            new = sorted(set(glob.glob(os.path.join(args.dump_dir, "callgrind.out.*"))) - before)
            if new and complete(new[-1]):
                break
            time.sleep(0.1)
        if not new:
            sys.exit(f"callgrind_drive: no dump appeared for {name}")
        phases[name] = {"requests": requests, "dump": new[-1],
                        "wall_s_under_valgrind": round(wall, 1)}
    print(json.dumps({"phases": phases}))


if __name__ == "__main__":
    main()
