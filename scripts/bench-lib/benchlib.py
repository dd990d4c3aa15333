#!/usr/bin/env python3
"""Helpers for scripts/bench.sh (stdlib only).

Subcommands:
  free-port [USED...]        print a random free TCP port on 127.0.0.1
  fio JSON                   print "iops bw_bytes io_bytes" of a one-job fio run
  xts-speed FILE             print "encrypt_Bps decrypt_Bps engine" from cryptvol-xts-speed
  openssl FILE               print bytes/s from `openssl speed -evp ...` output
  report META FIO CRYPTO WF  print the Markdown report; exit 1 with --strict
                             when a target is missed
"""

import json
import math
import random
import re
import socket
import statistics
import sys


def die(msg):
    print(f"benchlib: {msg}", file=sys.stderr)
    sys.exit(1)


# --- ports -----------------------------------------------------------------

def free_port(used):
    used = {int(u) for u in used}
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20000, 60999)
        if port in used:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        print(port)
        return
    die("no free TCP port found on 127.0.0.1 in 20000-60999")


# --- parsers ---------------------------------------------------------------

def fio_result(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    # Some fio engines print a line before the JSON document; skip to it.
    start = text.find("{")
    if start < 0:
        die(f"{path}: no JSON in fio output")
    try:
        doc = json.loads(text[start:])
    except json.JSONDecodeError as e:
        die(f"{path}: cannot parse fio JSON: {e}")
    jobs = doc.get("jobs") or []
    if len(jobs) != 1:
        die(f"{path}: expected one fio job, got {len(jobs)}")
    job = jobs[0]
    if job.get("error"):
        die(f"{path}: fio job error {job['error']}")
    # The direction that moved bytes (a job here either reads or writes).
    best = max((job.get(d, {}) for d in ("read", "write")),
               key=lambda d: d.get("io_bytes", 0))
    if not best.get("io_bytes"):
        die(f"{path}: fio moved no data")
    print(f"{best['iops']:.3f} {best['bw_bytes']} {best['io_bytes']}")


def xts_speed(path):
    # Lines like: "encrypt 4096-byte sectors: 3912345678 bytes/s (3.91 GB/s) [aes-ni]"
    enc = dec = None
    engine = "?"
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"\s*(encrypt|decrypt)\b.*?([0-9][0-9.eE+]*)\s*bytes/s", line)
        if not m:
            continue
        value = float(m.group(2))
        if m.group(1) == "encrypt":
            enc = value
        else:
            dec = value
        # "[vaes]" or "[vaes; wall clock 5.72 GB/s]": the engine is the first part.
        e = re.search(r"\[\s*([^\];]+?)\s*[\];]", line)
        if e:
            engine = e.group(1)
    if enc is None:
        die(f"{path}: no 'encrypt ... bytes/s' line from cryptvol-xts-speed")
    print(f"{enc:.0f} {'nan' if dec is None else f'{dec:.0f}'} {engine}")


def openssl_speed(path):
    # Last line: "AES-256-XTS    4380718.55k" (1000s of bytes per second).
    lines = [l for l in open(path, encoding="utf-8", errors="replace") if l.strip()]
    if not lines:
        die(f"{path}: empty openssl output")
    m = re.search(r"([0-9.]+)k\s*$", lines[-1])
    if not m:
        die(f"{path}: cannot parse openssl's last line: {lines[-1].strip()!r}")
    print(f"{float(m.group(1)) * 1000:.0f}")


# --- report ----------------------------------------------------------------

WORKLOADS = [
    # id, title, unit, target vs nbdkit+luks
    ("randread4k", "4k randread QD16", "IOPS", 1.5),
    ("randwrite4k", "4k randwrite QD16", "IOPS", 1.5),
    ("read1m", "1M read QD8", "GB/s", 2.0),
    ("write1m", "1M write QD8", "GB/s", 2.0),
]
PLAIN_TARGET = 0.8
CRYPTO_TARGET = 0.8

LABELS = {
    "cryptvol": "cryptvol (AES-256-XTS)",
    "nbdkit-file": "nbdkit file (plain)",
    "nbdkit-luks": "nbdkit file + luks filter (AES-256-XTS)",
    "qemu-nbd-raw": "qemu-nbd raw (plain)",
    "qemu-nbd-luks": "qemu-nbd LUKS (AES-256-XTS)",
}


# A snapshot create/restore should run at disk-copy speed (issue 5), a
# re-encrypting copy at 3x `qemu-img convert` (issue 6).
SNAPSHOT_TARGET = 1.0
REENCRYPT_TARGET = 3.0


def read_meta(path):
    meta = {}
    for line in open(path, encoding="utf-8"):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            meta[k] = v
    return meta


def summarize(values, stat):
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan
    return max(vals) if stat == "best" else statistics.median(vals)


def fmt_value(value, unit):
    if math.isnan(value):
        return "error"
    if unit == "IOPS":
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    return f"{value / 1e9:.2f}"


def fmt_ratio(num, den, target):
    """Returns (cell text, met or None when unknown)."""
    if math.isnan(num) or math.isnan(den) or den == 0:
        return "n/a", None
    r = num / den
    met = r >= target
    text = f"{r:.2f}x ✓" if met else f"**{r:.2f}x ✗**"
    return text, met


# Live snapshots: writers may be paused, and fio's p99 write latency may
# grow, by less than this (issue 5: "under 100 ms at the 99th percentile").
LIVE_PAUSE_TARGET_US = 100_000

# Workflow rows: (id, title, peer id, peer title, target ratio peer/cryptvol).
WORKFLOWS = [
    ("snap-create", "snapshot create, full 1 GiB", "disk-copy", "cp + sync of the volume file",
     SNAPSHOT_TARGET),
    ("snap-restore", "restore 1 GiB from snapshot", "disk-copy", "cp + sync of the volume file",
     SNAPSHOT_TARGET),
    ("reenc", "re-encrypt copy, 1 GiB (`volume copy --kms-key-id`)", "qemu-reenc",
     "`qemu-img convert` LUKS → LUKS, new key", REENCRYPT_TARGET),
]


def workflows(p, targets, meta, wf_path, stat):
    """Appends the workflow table (seconds, lower is better) and its targets."""
    secs, extra, live = {}, {}, None
    try:
        for line in open(wf_path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) > 1 and parts[1] == "live":
                live = parts[2:]
                continue
            if len(parts) >= 3:
                secs.setdefault(parts[1], []).append(float(parts[2]))
            if len(parts) == 4:
                extra[parts[1]] = int(parts[3])
    except FileNotFoundError:
        return
    if not secs:
        return
    # Seconds: lower is better, so "best" is the minimum here.
    def val(key):
        vals = [v for v in secs.get(key, []) if not math.isnan(v)]
        if not vals:
            return math.nan
        return min(vals) if stat == "best" else statistics.median(vals)

    def s(v):
        return "error" if math.isnan(v) else f"{v:.2f} s"

    p("")
    p(f"## Workflows (fully written 1 GiB volume, {meta.get('wf_rounds', '?')} interleaved "
      f"round(s), {stat}; each ends with `sync -f` on its output)")
    p("")
    p("| workflow | cryptvol | peer | peer time | peer / cryptvol |")
    p("| --- | ---: | --- | ---: | ---: |")
    for wid, title, peer, peer_title, target in WORKFLOWS:
        c, d = val(wid), val(peer)
        text, met = fmt_ratio(d, c, target)
        p(f"| {title} | {s(c)} | {peer_title} | {s(d)} | {text} (target ≥ {target:g}x) |")
        targets.append((f"{title}: {text.strip('*')} of {peer_title} (target ≥ {target:g}x)",
                        met))
    if "snap-incr" in secs:
        added = extra.get("snap-incr")
        mib = "?" if added is None else f"{added / 2**20:.1f} MiB"
        p(f"| incremental snapshot after 16 MiB rewritten | {s(val('snap-incr'))} | "
          f"(adds {mib}) | | |")
    if live is not None:
        n, p50, pmax, base99, snap99, snapmax = (float(x) for x in live)
        met = n > 0 and pmax < LIVE_PAUSE_TARGET_US and snap99 < LIVE_PAUSE_TARGET_US
        mark = "✓" if met else "✗"
        p("")
        p(f"Live snapshots while fio writes (4k randwrite QD16): {n:.0f} snapshots taken back "
          f"to back; writers paused {p50:.0f} µs (median), {pmax:.0f} µs (max) to fix each "
          f"point in time; fio write latency p99 {base99 / 1000:.2f} ms alone, "
          f"{snap99 / 1000:.2f} ms with snapshots running (max {snapmax / 1000:.1f} ms) "
          f"{mark} (target: pause and p99 under {LIVE_PAUSE_TARGET_US / 1000:.0f} ms)")
        targets.append((f"live snapshot: pause max {pmax:.0f} µs, fio p99 {snap99 / 1000:.2f} ms "
                        f"(target < {LIVE_PAUSE_TARGET_US / 1000:.0f} ms)", met))


def live(base_json, snap_json, snap_outs):
    """One WF_RESULTS row for the live-snapshot run:
    round, 'live', snapshots, pause median us, pause max us,
    fio write p99 us alone, with snapshots, and max with snapshots."""
    def lat(path):
        w = json.load(open(path, encoding="utf-8"))["jobs"][0]["write"]
        pct = w["clat_ns"].get("percentile", {})
        p99 = next((v for k, v in pct.items() if k.startswith("99.00")), math.nan)
        return p99 / 1000, w["clat_ns"]["max"] / 1000
    pauses = []
    for path in snap_outs:
        try:
            pauses.append(float(json.load(open(path, encoding="utf-8"))["write_pause_us"]))
        except (OSError, ValueError, KeyError):
            pass
    base99, _ = lat(base_json)
    snap99, snapmax = lat(snap_json)
    p50 = statistics.median(pauses) if pauses else math.nan
    pmax = max(pauses) if pauses else math.nan
    print(f"1\tlive\t{len(pauses)}\t{p50}\t{pmax}\t{base99}\t{snap99}\t{snapmax}")


def report(meta_path, fio_path, crypto_path, wf_path, strict):
    meta = read_meta(meta_path)
    stat = meta.get("stat", "median")
    servers = meta.get("servers", "").split()

    # fio results: round \t workload \t server \t iops \t bw_bytes
    cells = {}
    for line in open(fio_path, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        _, wid, server, iops, bw = parts
        unit = next(w[2] for w in WORKLOADS if w[0] == wid)
        value = float(iops) if unit == "IOPS" else float(bw)
        cells.setdefault((server, wid), []).append(value)

    def cell(server, wid):
        return summarize(cells.get((server, wid), []), stat)

    out = []
    p = out.append
    p("# cryptvol benchmark")
    p("")
    p(f"- date: {meta.get('date', '?')}")
    p(f"- machine: {meta.get('cpu', '?')}, nproc {meta.get('nproc', '?')}, "
      f"{meta.get('mem', '?')} RAM, Linux {meta.get('kernel', '?')}; "
      f"load average at start {meta.get('load', '?')}")
    engine = meta.get("engine", "?")
    p(f"- cryptvol: {meta.get('rev', '?')}" + ("" if engine == "?" else f"; XTS engine {engine}"))
    p(f"- tools: {meta.get('tools', '?')}")
    if servers:
        p(f"- method: fio `nbd` engine, 1 job, time-based {meta.get('seconds', '?')} s per cell, "
          f"{meta.get('rounds', '?')} interleaved round(s) (every server back to back per workload, "
          f"server order rotated each round), {stat} per cell; every export is 1 GiB, "
          f"filled with random data first; all servers on 127.0.0.1 TCP")
    p("")

    if servers:
        p("## NBD throughput")
        p("")
        head = "| server | " + " | ".join(f"{t} ({u})" for _, t, u, _ in WORKLOADS) + " |"
        p(head)
        p("| --- |" + " ---: |" * len(WORKLOADS))
        for s in servers:
            row = [fmt_value(cell(s, wid), unit) for wid, _, unit, _ in WORKLOADS]
            p(f"| {LABELS.get(s, s)} | " + " | ".join(row) + " |")

    targets = []  # (description, met: True / False / None when unmeasured)

    def ratio_row(label, den_server, target_of):
        row = []
        for wid, title, _, luks_target in WORKLOADS:
            target = target_of(luks_target)
            text, met = fmt_ratio(cell("cryptvol", wid), cell(den_server, wid), target)
            row.append(text)
            targets.append((f"cryptvol / {den_server} on {title}: {text.strip('*')} "
                            f"(target ≥ {target:g}x)", met))
        p(f"| {label} | " + " | ".join(row) + " |")

    if "cryptvol" in servers and "nbdkit-file" in servers:
        ratio_row(f"**cryptvol / nbdkit file** (target ≥ {PLAIN_TARGET:g}x)", "nbdkit-file",
                  lambda _t: PLAIN_TARGET)
    if "cryptvol" in servers and "nbdkit-luks" in servers:
        ratio_row("**cryptvol / nbdkit luks** (target ≥ 1.5x 4k, ≥ 2x 1M)", "nbdkit-luks",
                  lambda t: t)
    for extra in ("qemu-nbd-raw", "qemu-nbd-luks"):
        if "cryptvol" in servers and extra in servers:
            row = []
            for wid, _, _, _ in WORKLOADS:
                c, d = cell("cryptvol", wid), cell(extra, wid)
                row.append("n/a" if math.isnan(c) or math.isnan(d) or d == 0 else f"{c / d:.2f}x")
            p(f"| cryptvol / {extra} (no target) | " + " | ".join(row) + " |")

    if servers and int(meta.get("rounds", "1")) > 1:
        p("")
        p(f"Spread over rounds (min–max; the table shows the {stat}):")
        p("")
        p("| server | " + " | ".join(t for _, t, _, _ in WORKLOADS) + " |")
        p("| --- |" + " ---: |" * len(WORKLOADS))
        for s in servers:
            row = []
            for wid, _, unit, _ in WORKLOADS:
                vals = [v for v in cells.get((s, wid), []) if not math.isnan(v)]
                row.append(f"{fmt_value(min(vals), unit)}–{fmt_value(max(vals), unit)}"
                           if vals else "error")
            p(f"| {s} | " + " | ".join(row) + " |")

    # crypto results: round \t what \t bytes_per_s ; what in cv-enc cv-dec ossl-enc ossl-dec
    crypto = {}
    try:
        for line in open(crypto_path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                crypto.setdefault(parts[1], []).append(float(parts[2]))
    except FileNotFoundError:
        pass
    if crypto:
        def cval(key):
            return summarize(crypto.get(key, []), stat)

        def gbs(v):
            return "error" if math.isnan(v) else f"{v / 1e9:.2f}"

        p("")
        p(f"## Sector crypto (one core, 4 KiB, {meta.get('crypto_seconds', '?')} s each, "
          f"{meta.get('crypto_rounds', '?')} interleaved round(s), {stat})")
        p("")
        p("`openssl speed` (without `-elapsed`) divides by the CPU time it ran; "
          "`cryptvol-xts-speed`'s main figure does the same (see tools/xts_speed.rs).")
        p("")
        p("| | encrypt (GB/s) | decrypt (GB/s) |")
        p("| --- | ---: | ---: |")
        p(f"| `cryptvol-xts-speed` [{meta.get('engine', '?')}] | {gbs(cval('cv-enc'))} | "
          f"{gbs(cval('cv-dec'))} |")
        p(f"| `openssl speed -evp aes-256-xts -bytes 4096` | {gbs(cval('ossl-enc'))} | "
          f"{gbs(cval('ossl-dec'))} |")
        row = []
        for d in ("enc", "dec"):
            text, met = fmt_ratio(cval(f"cv-{d}"), cval(f"ossl-{d}"), CRYPTO_TARGET)
            row.append(text)
            if d == "enc":  # the target is stated for encryption; decrypt is shown too
                targets.append((f"cryptvol XTS encrypt / openssl: {text.strip('*')} "
                                f"(target ≥ {CRYPTO_TARGET:g}x)", met))
        p(f"| **cryptvol / openssl** (target ≥ {CRYPTO_TARGET:g}x) | {row[0]} | {row[1]} |")

    workflows(p, targets, meta, wf_path, stat)

    misses = [desc for desc, met in targets if met is not True]
    p("")
    if misses:
        p(f"Targets: {len(targets) - len(misses)} of {len(targets)} met; missed or unmeasured:")
        for m in misses:
            p(f"- {m}")
    elif targets:
        p(f"Targets: all {len(targets)} met.")
    else:
        p("Targets: none checked (they need cryptvol, nbdkit-file and nbdkit-luks, "
          "and the crypto comparison).")
    print("\n".join(out))
    sys.stdout.flush()
    if strict and misses:
        sys.exit(1)


def main(argv):
    if not argv:
        die("usage: benchlib.py free-port|fio|xts-speed|openssl|live|report ...")
    cmd, args = argv[0], argv[1:]
    if cmd == "free-port":
        free_port(args)
    elif cmd == "fio" and len(args) == 1:
        fio_result(args[0])
    elif cmd == "xts-speed" and len(args) == 1:
        xts_speed(args[0])
    elif cmd == "openssl" and len(args) == 1:
        openssl_speed(args[0])
    elif cmd == "live" and len(args) >= 2:
        live(args[0], args[1], args[2:])
    elif cmd == "report" and len(args) in (4, 5):
        report(*args[:4], strict=len(args) == 5 and args[4] == "--strict")
    else:
        die(f"bad arguments: {' '.join(argv)}")


if __name__ == "__main__":
    main(sys.argv[1:])
