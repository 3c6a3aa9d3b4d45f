#!/usr/bin/env python3
"""Turns the raw outputs of benches/limits.sh into one JSON document (figures, limits, ratios,
targets), or prints that document as a table (--table FILE).

Only figures that were measured appear; a missing input gives null and the target "not
measured", never an estimate.
"""
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def machine():
    cpu = None
    info = read("/proc/cpuinfo") or ""
    m = re.search(r"model name\s*:\s*(.+)", info)
    if m:
        cpu = m.group(1).strip()
    mem = None
    m = re.search(r"MemTotal:\s*(\d+) kB", read("/proc/meminfo") or "")
    if m:
        mem = round(int(m.group(1)) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "kernel": platform.release(),
        "hostname_kind": platform.machine(),
    }


def k6_metric(summary, name, stat):
    try:
        return summary["metrics"][name]["values"][stat]
    except (KeyError, TypeError):
        return None


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def target(name, value, op, bound, unit, note=""):
    if value is None:
        met = None
    elif op == ">=":
        met = value >= bound
    else:
        met = value < bound if op == "<" else value <= bound
    return {"target": name, "value": value, "op": op, "bound": bound, "unit": unit,
            "met": met, "note": note}


def summarise(out, quick, connections, duration):
    raw = os.path.join(out, "raw")
    pgbench_txt = read(os.path.join(raw, "pgbench.txt")) or ""
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", pgbench_txt)
    pg_tps = float(m.group(1)) if m else None
    rotation_txt = read(os.path.join(raw, "pgbench-rotation.txt")) or ""
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", rotation_txt)
    rotation_tps = float(m.group(1)) if m else None
    metrics_txt = read(os.path.join(raw, "metrics-after-refresh.txt")) or ""
    batch = {}
    for key in ("sum", "count"):
        m = re.search(rf"^sessiond_store_commit_batch_size_{key} ([\d.e+]+)$", metrics_txt, re.M)
        batch[key] = float(m.group(1)) if m else None
    hello = load(os.path.join(raw, "wrk-hello.json")) or {}
    argon2 = load(os.path.join(raw, "argon2.json")) or {}
    refresh = load(os.path.join(raw, "wrk-refresh.json")) or {}
    me = load(os.path.join(raw, "wrk-me.json")) or {}
    login = load(os.path.join(raw, "wrk-login.json")) or {}
    startup = load(os.path.join(raw, "startup-main.json")) or {}
    me_k6 = load(os.path.join(out, "limits-k6", "me_read.json"))
    flood_k6 = load(os.path.join(out, "limits-k6", "login_flood.json"))
    rss_files = sorted(f for f in os.listdir(raw) if f.startswith("actor_rss-"))
    actor_rss = load(os.path.join(raw, rss_files[0])) if rss_files else None
    memory = {}
    for f in sorted(os.listdir(raw)):
        if f.startswith("memory-") and f.endswith(".json"):
            memory[f[len("memory-"):-len(".json")]] = load(os.path.join(raw, f))

    limits = {
        "pgbench_single_update_tps": pg_tps,
        "hello_world_rps": hello.get("ok_per_s"),
        "argon2id_hashes_per_s": argon2.get("hashes_per_s"),
    }
    def cpu_us_per_request(name, wrk):
        cpu = load(os.path.join(raw, f"cpu-{name}.json"))
        if not cpu or not wrk.get("requests"):
            return None
        return cpu["server_cpu_ticks"] / cpu["ticks_per_s"] * 1e6 / wrk["requests"]

    references = {
        "hello_server_cpu_us_per_request": cpu_us_per_request("hello", hello),
        "sessiond_cpu_us_per_refresh": cpu_us_per_request("refresh", refresh),
        "sessiond_cpu_us_per_me": cpu_us_per_request("me", me),
        "sessiond_cpu_us_per_login": cpu_us_per_request("login", login),
        "pgbench_rotation_statement_tps": rotation_tps,
        "rotation_statement_to_single_update": ratio(rotation_tps, pg_tps),
        "refresh_run_mean_commit_batch": ratio(batch["sum"], batch["count"]),
        "refresh_run_commit_batches": batch["count"],
    }
    bare = actor_rss["bare"]["bytes_per_actor"] if actor_rss else None
    figures = {
        "refreshes_per_s": refresh.get("ok_per_s"),
        "refresh_errors": refresh.get("errors"),
        "refresh_latency_ms": refresh.get("latency_ms"),
        "me_per_s": me.get("ok_per_s"),
        "me_latency_ms": me.get("latency_ms"),
        "me_p99_ms_at_half_hello": k6_metric(me_k6, "http_req_duration{name:me}", "p(99)"),
        "me_rate_offered_at_half_hello": k6_metric(me_k6, "http_reqs", "rate"),
        "logins_per_s": login.get("ok_per_s"),
        "login_latency_ms": login.get("latency_ms"),
        "refresh_p99_ms_under_login_flood": k6_metric(flood_k6, "http_req_duration{scenario:refreshes}", "p(99)"),
        "logins_accepted_under_flood": k6_metric(flood_k6, "logins_accepted", "count"),
        "logins_shed_under_flood": k6_metric(flood_k6, "logins_shed", "count"),
        "startup_to_ready_ms": startup.get("startup_to_ready_ms"),
        "bare_actor_bytes": bare,
        "in_process": actor_rss,
        "sessiond_memory": memory,
    }
    ratios = {
        "refreshes_to_pgbench": ratio(figures["refreshes_per_s"], pg_tps),
        "me_to_hello": ratio(figures["me_per_s"], limits["hello_world_rps"]),
        "logins_to_argon2id": ratio(figures["logins_per_s"], limits["argon2id_hashes_per_s"]),
        "session_actor_to_bare_in_process":
            actor_rss.get("ratio_session_to_bare") if actor_rss else None,
    }
    targets = [
        target("durable refreshes/s ≥ 1.0 × pgbench", ratios["refreshes_to_pgbench"], ">=", 1.0, "×"),
        target("GET /me/s ≥ 0.5 × hello world", ratios["me_to_hello"], ">=", 0.5, "×"),
        target("GET /me p99 at half the hello-world rate", figures["me_p99_ms_at_half_hello"], "<", 5, "ms"),
        target("logins/s ≥ 0.9 × argon2id", ratios["logins_to_argon2id"], ">=", 0.9, "×"),
        target("refresh p99 under a login flood", figures["refresh_p99_ms_under_login_flood"], "<", 20, "ms"),
        target("startup to ready (empty database)", figures["startup_to_ready_ms"], "<", 1000, "ms"),
        target("session actor RSS ≤ 1.25 × bare actor (in process)",
               ratios["session_actor_to_bare_in_process"], "<=", 1.25, "×"),
    ]
    for n, mem in sorted(memory.items()):
        if not mem or "bytes_per_session" not in mem:
            targets.append(target(f"sessiond RSS per session ≤ 1.25 × bare actor ({n})", None, "<=", 1.25, "×",
                                  (mem or {}).get("skipped", "")))
            targets.append(target(f"RSS after passivation within 10 % of idle ({n})", None, "<=", 0.10, "×"))
            continue
        ratios[f"sessiond_session_to_bare_{n}"] = ratio(mem["bytes_per_session"], bare)
        targets.append(target(f"sessiond RSS per session ≤ 1.25 × bare actor ({n})",
                              ratios[f"sessiond_session_to_bare_{n}"], "<=", 1.25, "×"))
        targets.append(target(f"RSS after passivation within 10 % of idle ({n})",
                              mem["over_idle_after_passivation"], "<=", 0.10, "× idle"))
        if mem.get("over_warm_idle_after_passivation") is not None:
            targets.append(target(f"RSS after passivation within 10 % of warm idle ({n})",
                                  mem["over_warm_idle_after_passivation"], "<=", 0.10, "× warm idle",
                                  "idle after 1 000 sessions came and went"))
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick_validation_run": quick == "1",
        "valid_figures": quick != "1",
        "machine": machine(),
        "postgres": {
            "version": read(os.path.join(raw, "pg_version.txt")),
            "synchronous_commit": read(os.path.join(raw, "pg_synchronous_commit.txt")),
            "fsync": read(os.path.join(raw, "pg_fsync.txt")),
        },
        "load": {"tool": "wrk (throughput), k6 1.1.0 (constant-rate latency)",
                 "connections": int(connections), "duration_s": float(duration)},
        "argon2": argon2,
        "limits": limits,
        "references": references,
        "figures": figures,
        "ratios": ratios,
        "targets": targets,
    }


def fmt(v):
    if v is None:
        return "not measured"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(doc):
    if doc.get("quick_validation_run"):
        print("QUICK VALIDATION RUN: these numbers only show the harness works; they mean nothing.")
    print("limits:")
    for k, v in doc["limits"].items():
        print(f"  {k:40} {fmt(v)}")
    print("references:")
    for k, v in doc.get("references", {}).items():
        print(f"  {k:40} {fmt(v)}")
    print("targets:")
    for t in doc["targets"]:
        state = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        print(f"  {t['target']:60} {fmt(t['value']):>14} {t['unit']:6} ({t['op']} {t['bound']}) {state}")


def markdown(doc, criterion, k6_dir):
    """The tables of docs/benchmarks.md, filled from one run."""
    lines = []
    if doc.get("quick_validation_run"):
        lines.append("> QUICK VALIDATION RUN: these numbers only show the pipeline works; they mean nothing.\n")
    m = doc["machine"]
    lines += [f"Run: {doc['date']} on {m.get('cpu')} ({m.get('cores')} cores, {m.get('memory_gib')} GiB), "
              f"kernel {m.get('kernel')}; PostgreSQL: {doc['postgres'].get('version')} "
              f"(synchronous_commit={doc['postgres'].get('synchronous_commit')}, fsync={doc['postgres'].get('fsync')}); "
              f"argon2id m={doc['argon2'].get('m_cost_kib')} KiB, t={doc['argon2'].get('t_cost')}, "
              f"p={doc['argon2'].get('p_cost')}; load: {doc['load']['tool']}, "
              f"{doc['load']['connections']} connections, {doc['load']['duration_s']} s per run.", ""]
    lines += ["| limit | value |", "|---|---|"]
    for k, v in doc["limits"].items():
        lines.append(f"| {k} | {fmt(v)} |")
    if doc.get("references"):
        lines += ["", "| reference | value |", "|---|---|"]
        for k, v in doc["references"].items():
            lines.append(f"| {k} | {fmt(v)} |")
    lines += ["", "| target | measured | bound | met |", "|---|---|---|---|"]
    for t in doc["targets"]:
        state = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {fmt(t['value'])} {t['unit'] if t['value'] is not None else ''} "
                     f"| {t['op']} {t['bound']} | {state} |")
    if criterion:
        lines += ["", "| criterion bench | mean | median |", "|---|---|---|"]
        for k, v in criterion.items():
            lines.append(f"| {k} | {v['mean_ns'] / 1000:.2f} µs | {v['median_ns'] / 1000:.2f} µs |")
    if k6_dir and os.path.isdir(k6_dir):
        lines += ["", "| k6 scenario | profile | requests/s | p50 ms | p95 ms | p99 ms | thresholds |",
                  "|---|---|---|---|---|---|---|"]
        for f in sorted(os.listdir(k6_dir)):
            d = load(os.path.join(k6_dir, f))
            if not d or "metrics" not in d:
                continue
            mt = d["metrics"]
            dur = mt.get("http_req_duration", {}).get("values", {})
            ok = all(t.get("ok", True) for x in mt.values() for t in (x.get("thresholds") or {}).values())
            lines.append(f"| {f[:-5]} | {d.get('sessiond', {}).get('profile')} "
                         f"| {fmt(mt.get('http_reqs', {}).get('values', {}).get('rate'))} "
                         f"| {fmt(dur.get('med'))} | {fmt(dur.get('p(95)'))} | {fmt(dur.get('p(99)'))} "
                         f"| {'passed' if ok else '**failed**'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(load(sys.argv[2]))
    elif sys.argv[1] == "--markdown":
        print(markdown(load(sys.argv[2]), load(sys.argv[3]) if len(sys.argv) > 3 else None,
                       sys.argv[4] if len(sys.argv) > 4 else None), end="")
    else:
        print(json.dumps(summarise(*sys.argv[1:5]), indent=2))
