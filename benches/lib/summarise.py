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


def autogroups_label(value):
    """A hashing variant's kernel.sched_autogroup_enabled as "on" or "off"; None where the run
    did not record it (runs before it was kept, or a kernel without autogroups)."""
    return {"1": "on", "0": "off"}.get(value)


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
    round2 = second_round(out, raw, figures, limits, references, cpu_us_per_request)
    return {
        "round2": round2,
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


def prom(text, name, labels=None):
    """The value of one Prometheus sample in a /metrics text (0 when absent)."""
    total = 0.0
    for line in (text or "").splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+\deE.]+|NaN)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        total += float(m.group(3))
    return total


def second_round(out, raw, figures, limits, references, cpu_us_per_request):
    """Issue #15's targets, from the same run: CPU per request, refresh against the pgbench
    limit, logins per hashing variant, two instances against one, fixed-rate latency."""
    variants = []
    for f in sorted(os.listdir(raw)):
        if not (f.startswith("hash-variant-") and f.endswith(".json")):
            continue
        v = load(os.path.join(raw, f)) or {}
        label = v.get("label")
        suffix = "" if label == "default" else f"-{label}"
        login = load(os.path.join(raw, f"wrk-login{suffix}.json")) or {}
        k6dir = os.path.join(out, "limits-k6") if label == "default" else os.path.join(out, "limits-k6", f"hash-{label}")
        flood = load(os.path.join(k6dir, "login_flood.json"))
        logins = login.get("ok_per_s")
        variants.append({
            "label": label, "concurrency": v.get("concurrency"), "priority": v.get("priority"),
            # kernel.sched_autogroup_enabled during the variant (None in runs before it was kept).
            "autogroup": v.get("autogroup"),
            "logins_per_s": logins,
            "logins_to_argon2id": ratio(logins, limits["argon2id_hashes_per_s"]),
            "login_p50_ms": (login.get("latency_ms") or {}).get("p50"),
            "sessiond_cpu_us_per_login": cpu_us_per_request(f"login{suffix}", login),
            "refresh_p99_ms_under_login_flood": k6_metric(flood, "http_req_duration{scenario:refreshes}", "p(99)"),
            "logins_accepted_under_flood": k6_metric(flood, "logins_accepted", "count"),
            "logins_shed_under_flood": k6_metric(flood, "logins_shed", "count"),
        })

    def two(name):
        d = load(os.path.join(raw, f"two-{name}.json"))
        if not d:
            return None
        cpu = load(os.path.join(raw, f"cpu-two-{name}.json"))
        res = {k: d.get(k) for k in ("ok_per_s", "ok", "requests", "errors", "latency_ms")}
        res["sessiond_cpu_us_per_request"] = (
            cpu["server_cpu_ticks"] / cpu["ticks_per_s"] * 1e6 / d["requests"]
            if cpu and d.get("requests") else None)
        counts = {}
        for inst in ("a", "b"):
            before = read(os.path.join(raw, f"metrics-{name}-{inst}-before.txt"))
            after = read(os.path.join(raw, f"metrics-{name}-{inst}-after.txt"))
            if before is None or after is None:
                continue
            for key, metric, labels in (
                ("fence_conflicts", "sessiond_session_fence_conflicts_total", None),
                ("load_session", "sessiond_store_operation_duration_seconds_count", {"operation": "load_session"}),
                ("find_generation", "sessiond_store_operation_duration_seconds_count", {"operation": "find_generation"}),
                ("activations_from_store", "sessiond_session_activations_total", {"source": "store"}),
                ("commit_batches", "sessiond_store_commit_batch_size_count", None),
                ("committed_changes", "sessiond_store_commit_batch_size_sum", None),
            ):
                counts[key] = counts.get(key, 0) + prom(after, metric, labels) - prom(before, metric, labels)
        if counts:
            n = d.get("ok") or 0
            # A stale-actor re-read: the session's row read again by an actor that was already
            # resident (its memory was behind the store), i.e. every load_session that did
            # not activate an actor.
            counts["stale_rereads"] = counts["load_session"] - counts["activations_from_store"]
            res["store_counts"] = counts
            res["per_request"] = {k: (v / n if n else None) for k, v in counts.items()}
            # Group commit's batches over all instances of the run: changes per transaction.
            res["changes_per_commit_batch"] = (
                counts["committed_changes"] / counts["commit_batches"] if counts["commit_batches"] else None)
        errs = d.get("errors") or {}
        res["error_count"] = sum(errs.get(k, 0) for k in ("status", "io"))
        return res

    two_instances = {name: two(name) for name in ("one-refresh", "one-me", "two-refresh", "two-me")}
    two_settings = read(os.path.join(raw, "two-settings.txt"))

    fixed = []
    for kind in ("me", "refresh"):
        for pct in (25, 50, 75):
            d = load(os.path.join(raw, f"fixed-{kind}-{pct}.json"))
            if d:
                cpu = load(os.path.join(raw, f"cpu-fixed-{kind}-{pct}.json"))
                fixed.append({
                    "tool": "bench_load", "kind": kind, "percent_of_max": pct,
                    "rate_offered": d.get("rate_offered"), "ok_per_s": d.get("ok_per_s"),
                    "errors": d.get("errors"), "sent_late_over_1ms": d.get("sent_late_over_1ms"),
                    "latency_ms": d.get("latency_ms"), "service_ms": d.get("service_ms"),
                    "sessiond_cpu_us_per_request": (
                        cpu["server_cpu_ticks"] / cpu["ticks_per_s"] * 1e6 / d["requests"]
                        if cpu and d.get("requests") else None),
                })
            o = load(os.path.join(raw, f"oha-{kind}-{pct}.json"))
            if o:
                lp = {k: v * 1000 for k, v in (o.get("latencyPercentiles") or {}).items() if v is not None}
                codes = o.get("statusCodeDistribution") or {}
                fixed.append({
                    "tool": "oha", "kind": kind, "percent_of_max": pct,
                    "rate_offered": float(read(os.path.join(raw, f"oha-{kind}-{pct}.rate")) or "nan"), "ok_per_s": (o.get("summary") or {}).get("requestsPerSec"),
                    "errors": {"status": sum(v for k, v in codes.items() if k != "200"),
                               "io": sum((o.get("errorDistribution") or {}).values())},
                    "latency_ms": {"p50": lp.get("p50"), "p90": lp.get("p90"), "p99": lp.get("p99"),
                                   "p99_9": lp.get("p99.9"), "max": (o.get("summary") or {}).get("slowest", 0) * 1000},
                })
    pins = read(os.path.join(raw, "pin-load.txt"))

    refresh_p99 = (figures.get("refresh_latency_ms") or {}).get("p99")
    refresh_ratio = ratio(figures.get("refreshes_per_s"), limits["pgbench_single_update_tps"])
    targets = [
        target("sessiond CPU per durable refresh", references.get("sessiond_cpu_us_per_refresh"), "<=", 90, "µs"),
        target("sessiond CPU per GET /me", references.get("sessiond_cpu_us_per_me"), "<=", 25, "µs"),
        target("durable refreshes/s ≥ 0.6 × pgbench single-row UPDATE", refresh_ratio, ">=", 0.6, "×"),
        target("refresh p99 at that rate (wrk, closed loop)", refresh_p99, "<=", 10, "ms"),
    ]
    for v in variants:
        shown = {k: ("sessiond's default" if v[k] in (None, "-") else v[k]) for k in ("concurrency", "priority")}
        note = f"hashing {v['label']}: concurrency {shown['concurrency']}, priority {shown['priority']}"
        if groups := autogroups_label(v.get("autogroup")):
            note += f", autogroups {groups}"
        targets.append(target(f"logins/s ≥ 0.85 × argon2id ({v['label']})", v["logins_to_argon2id"], ">=", 0.85, "×", note))
        targets.append(target(f"refresh p99 under a login flood at 2 × argon2id ({v['label']})",
                              v["refresh_p99_ms_under_login_flood"], "<", 20, "ms", note))
    for kind in ("refresh", "me"):
        one, both = two_instances.get(f"one-{kind}"), two_instances.get(f"two-{kind}")
        r = ratio((both or {}).get("ok_per_s"), (one or {}).get("ok_per_s"))
        note = f"each of the two with {two_settings.strip() or 'the defaults'}" if two_settings is not None else ""
        targets.append(target(f"two instances ÷ one, {kind}/s (round-robin)", r, ">=", 0.85, "×", note))
        errs = None if both is None or one is None else both["error_count"] + one["error_count"]
        targets.append(target(f"two-instance run errors, {kind}", errs, "<=", 0, "errors"))
    return {
        "targets": targets,
        "hashing_variants": variants,
        "two_instances": two_instances,
        "two_instance_settings": None if two_settings is None else two_settings.strip(),
        "fixed_rate": fixed,
        "load_pinned_to_cpus": pins,
    }


# Figures the regression guard compares with the run of record: (path, better when).
GUARDED = [
    (("limits", "pgbench_single_update_tps"), "higher"),
    (("limits", "hello_world_rps"), "higher"),
    (("limits", "argon2id_hashes_per_s"), "higher"),
    (("figures", "refreshes_per_s"), "higher"),
    (("figures", "refresh_latency_ms", "p99"), "lower"),
    (("figures", "me_per_s"), "higher"),
    (("figures", "me_latency_ms", "p99"), "lower"),
    (("figures", "logins_per_s"), "higher"),
    (("figures", "refresh_p99_ms_under_login_flood"), "lower"),
    (("figures", "startup_to_ready_ms"), "lower"),
    (("references", "sessiond_cpu_us_per_refresh"), "lower"),
    (("references", "sessiond_cpu_us_per_me"), "lower"),
    (("references", "sessiond_cpu_us_per_login"), "lower"),
    (("references", "pgbench_rotation_statement_tps"), "higher"),
    (("references", "refresh_run_mean_commit_batch"), None),
    (("ratios", "refreshes_to_pgbench"), "higher"),
    (("ratios", "me_to_hello"), "higher"),
    (("ratios", "logins_to_argon2id"), "higher"),
]


def dig(doc, path):
    for k in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc if isinstance(doc, (int, float)) else None


def against(doc, record, record_path):
    """Prints every guarded figure beside the run of record's, with the change."""
    print(f"change against the limits run of record ({record_path}: "
          f"{record.get('date')}, {record.get('record_of', 'commit unknown')}):")
    if doc.get("quick_validation_run"):
        print("  (QUICK validation run: the changes below mean nothing)")
    for path, better in GUARDED:
        now, then = dig(doc, path), dig(record, path)
        name = ".".join(path)
        if now is None:
            print(f"  {name:48} not measured in this run")
            continue
        if then in (None, 0):
            print(f"  {name:48} {fmt(now):>12}   (not in the record)")
            continue
        change = (now - then) / then * 100
        worse = (better == "higher" and change < 0) or (better == "lower" and change > 0)
        flag = " (worse)" if worse and abs(change) >= 5 else ""
        print(f"  {name:48} {fmt(now):>12}   record {fmt(then):>12}   change {change:+.1f} %{flag}")


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
    print("targets (first round):")
    for t in doc["targets"]:
        state = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        print(f"  {t['target']:60} {fmt(t['value']):>14} {t['unit']:6} ({t['op']} {t['bound']}) {state}")
    r2 = doc.get("round2")
    if r2:
        print("targets (second round, issue #15):")
        for t in r2["targets"]:
            state = {True: "met", False: "MISSED", None: "-"}[t["met"]]
            print(f"  {t['target']:66} {fmt(t['value']):>10} {t['unit']:6} ({t['op']} {t['bound']}) {state}")
        for name, d in (r2.get("two_instances") or {}).items():
            if d and d.get("per_request"):
                pr = d["per_request"]
                print(f"  {name:14} {fmt(d['ok_per_s'])}/s; per request: fence conflicts {fmt(pr['fence_conflicts'])}, "
                      f"stale re-reads {fmt(pr['stale_rereads'])}, find_generation {fmt(pr['find_generation'])}")
        for f in r2.get("fixed_rate") or []:
            lat = f.get("latency_ms") or {}
            print(f"  fixed rate {f['tool']:10} {f['kind']:7} {f['percent_of_max']:>3} %: {fmt(f['ok_per_s'])}/s "
                  f"p50 {fmt(lat.get('p50'))} p99 {fmt(lat.get('p99'))} p99.9 {fmt(lat.get('p99_9'))} ms")


def round2_markdown(doc):
    """The second round's tables (issue #15): targets, hashing variants, two instances and the
    fixed-rate latencies, ready for docs/benchmarks.md."""
    r2 = doc.get("round2")
    if not r2:
        return []
    lines = ["", "**Second round (issue #15) targets**", "",
             "| target | measured | bound | met | note |", "|---|---|---|---|---|"]
    for t in r2["targets"]:
        state = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {fmt(t['value'])} {t['unit'] if t['value'] is not None else ''} "
                     f"| {t['op']} {t['bound']} | {state} | {t.get('note', '')} |")
    if r2.get("hashing_variants"):
        lines += ["", "| hashing (concurrency, priority, autogroups) | logins/s | ÷ argon2id | login p50 ms | CPU per login | "
                      "refresh p99 under flood | logins accepted / shed |", "|---|---|---|---|---|---|---|"]
        for v in r2["hashing_variants"]:
            cpu = v["sessiond_cpu_us_per_login"]
            groups = autogroups_label(v.get("autogroup")) or "?"
            lines.append(f"| {v['label']} ({v['concurrency']}, {v['priority']}, {groups}) | {fmt(v['logins_per_s'])} "
                         f"| {fmt(v['logins_to_argon2id'])} × | {fmt(v['login_p50_ms'])} "
                         f"| {fmt(cpu / 1000 if cpu else None)} ms | {fmt(v['refresh_p99_ms_under_login_flood'])} ms "
                         f"| {fmt(v['logins_accepted_under_flood'])} / {fmt(v['logins_shed_under_flood'])} |")
    ti = r2.get("two_instances") or {}
    if any(ti.values()):
        lines += ["", "| instances, load | answers/s | p50 ms | p99 ms | CPU per request (all instances) | errors "
                      "| fence conflicts per request | stale re-reads per request | history look-ups per request "
                      "| changes per commit batch |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, d in ti.items():
            if not d:
                continue
            pr = d.get("per_request") or {}
            lat = d.get("latency_ms") or {}
            lines.append(f"| {name} | {fmt(d['ok_per_s'])} | {fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} "
                         f"| {fmt(d['sessiond_cpu_us_per_request'])} µs | {d['error_count']} "
                         f"| {fmt(pr.get('fence_conflicts'))} | {fmt(pr.get('stale_rereads'))} "
                         f"| {fmt(pr.get('find_generation'))} | {fmt(d.get('changes_per_commit_batch'))} |")
        if r2.get("two_instance_settings") is not None:
            lines.append(f"\nEach of the two instances ran with {r2['two_instance_settings'] or 'the defaults'}; "
                         "the one instance with the defaults.")
    if r2.get("fixed_rate"):
        lines += ["", "| fixed rate (corrected) | tool | % of max | offered /s | answered /s | p50 ms | p99 ms "
                      "| p99.9 ms | max ms | errors |", "|---|---|---|---|---|---|---|---|---|---|"]
        for f in r2["fixed_rate"]:
            lat = f.get("latency_ms") or {}
            errs = f.get("errors") or {}
            lines.append(f"| {f['kind']} | {f['tool']} | {f['percent_of_max']} % | {fmt(f.get('rate_offered'))} "
                         f"| {fmt(f.get('ok_per_s'))} | {fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} "
                         f"| {fmt(lat.get('p99_9'))} | {fmt(lat.get('max'))} | {sum(v for v in errs.values() if v)} |")
        if r2.get("load_pinned_to_cpus"):
            lines.append(f"\nThe fixed-rate and two-instance generators ran pinned to CPU {r2['load_pinned_to_cpus']} (taskset).")
    return lines


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
    lines += round2_markdown(doc)
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
    elif sys.argv[1] == "--against":
        record = load(sys.argv[3])
        if record is None:
            print(f"no limits run of record at {sys.argv[3]}: nothing to compare with")
        else:
            against(load(sys.argv[2]), record, sys.argv[3])
    elif sys.argv[1] == "--markdown":
        print(markdown(load(sys.argv[2]), load(sys.argv[3]) if len(sys.argv) > 3 else None,
                       sys.argv[4] if len(sys.argv) > 4 else None), end="")
    else:
        print(json.dumps(summarise(*sys.argv[1:5]), indent=2))
