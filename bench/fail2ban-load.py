#!/usr/bin/python3
"""Mail log lines at a fixed rate through a private, real fail2ban-server with the
shipped filters, jails and actions (paths only changed), into f2b-mailguard; run by
bench/fail2ban-load.sh, which builds the binary and starts PostgreSQL when asked.

Traffic: ACCOUNTS accounts submitting mail (Postfix `client=... sasl_username=` lines,
each one message for the rate jail, a new (user, address) pair for the smtp jail),
about 10 % of messages bouncing one recipient, the queue files' `removed` lines, and
Dovecot IMAP logins. Optionally a botnet account logging in from a new network every
200 ms while the rest flows: its block must follow its crossing login at once.

Every line is timed when written; the store is polled for the events the jails must
produce. Prints one JSON object: written (events the lines call for), stored, missing,
extra, lag written -> stored p50/p95/max, the botnet's block lag, Fail2ban's drops.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNTS = 200
BOTNET = "botnet-victim@example.com"
# The smtp jail's block threshold is "more than 10 networks" (config.example.toml).
BOTNET_CROSSING = 11


def conf_dir(work, binary, config, log, action, backend):
    conf = os.path.join(work, "conf")
    for d in ("filter.d", "action.d", "jail.d"):
        shutil.copytree(os.path.join(ROOT, "fail2ban", d), os.path.join(conf, d))
    shutil.copy("/etc/fail2ban/filter.d/common.conf", os.path.join(conf, "filter.d"))
    with open(os.path.join(conf, "jail.conf"), "w") as f:
        f.write("[DEFAULT]\nbackend = %s\n" % backend)
    with open(os.path.join(conf, "action.d", "mailguard.local"), "w") as f:
        f.write("[Init]\nbinary = %s\nconfig = %s\n" % (binary, config))
    py = os.path.join(conf, "action.d", "f2b_mailguard.py")
    text = open(py).read()
    text = re.sub(r'(?m)^BINARY = .*$', "BINARY = %s" % json.dumps(binary), text)
    text = re.sub(r'(?m)^CONFIG = .*$', "CONFIG = %s" % json.dumps(config), text)
    open(py, "w").write(text)
    local = "[DEFAULT]\nmailguard_action = %s\n\n" % action
    for jail in ("mailguard-smtp", "mailguard-rate", "mailguard-bounce", "mailguard-imap"):
        local += "[%s]\nenabled = true\nlogpath = %s\nbackend = %s\n\n" % (jail, log, backend)
    with open(os.path.join(conf, "jail.d", "mailguard.local"), "w") as f:
        f.write(local)
    run = os.path.join(work, "run")
    os.makedirs(run)
    with open(os.path.join(conf, "fail2ban.conf"), "w") as f:
        f.write("[Definition]\nloglevel = INFO\nlogtarget = %s\nsocket = %s\npidfile = %s\n"
                "dbfile = :memory:\n" % (os.path.join(work, "fail2ban.log"),
                                         os.path.join(run, "f2b.sock"),
                                         os.path.join(run, "f2b.pid")))
    return conf


def client(work, *args):
    return subprocess.run(["/usr/bin/fail2ban-client", "-s",
                           os.path.join(work, "run", "f2b.sock")] + list(args),
                          capture_output=True, text=True)


class Traffic(object):
    """The lines to write, each with the event key it must produce (or None)."""

    def __init__(self, botnet):
        self.n = 0
        self.msg = 0
        self.pairs = set()
        self.botnet = botnet
        self.botnet_sent = 0
        self.pending_removed = []
        self.last_user = {}

    def next_lines(self, stamp, k):
        """k lines: (text, key or None)."""
        out = []
        while len(out) < k:
            self.n += 1
            if self.pending_removed and self.n % 3 == 0:
                qid = self.pending_removed.pop(0)
                out.append(("%s mx postfix/qmgr[8002]: %s: removed" % (stamp, qid), None))
                continue
            u = self.n % ACCOUNTS
            user = "user%03d@example.com" % u
            if self.n % 7 == 0:
                # IMAP login: a new pair now and then.
                ip = "192.0.2.%d" % (1 + (self.n // 7) % 40)
                key = None
                if (user, ip, "imap") not in self.pairs:
                    self.pairs.add((user, ip, "imap"))
                    key = ("imap", user, ip)
                out.append(("%s mx dovecot: imap-login: Login: user=<%s>, method=PLAIN, "
                            "rip=%s, lip=192.0.2.254, mpid=%d, TLS" %
                            (stamp, user, ip, 100 + self.n % 50), key))
                continue
            self.msg += 1
            qid = "B%09X" % self.msg
            ip = "198.51.100.%d" % (1 + u % 50 + (self.msg // 997) % 3)
            out.append(("%s mx postfix/submission/smtpd[%d]: %s: client=unknown[%s], "
                        "sasl_method=PLAIN, sasl_username=%s" %
                        (stamp, 7000 + u, qid, ip, user), ("rate", qid)))
            if (user, ip, "smtp") not in self.pairs:
                self.pairs.add((user, ip, "smtp"))
                out[-1] = (out[-1][0], ("rate", qid), ("smtp", user, ip))
            if self.msg % 10 == 0:
                out.append(("%s mx postfix/smtp[8001]: %s: to=<gone%d@remote.example>, "
                            "relay=mx.remote.example[192.0.2.9]:25, delay=0.2, "
                            "delays=0.1/0/0/0.1, dsn=5.1.1, status=bounced (host "
                            "mx.remote.example[192.0.2.9] said: 550 5.1.1 unknown user)" %
                            (stamp, qid, self.msg), ("bounces", qid)))
            self.pending_removed.append(qid)
        return out

    def botnet_line(self, stamp):
        self.botnet_sent += 1
        i = self.botnet_sent
        ip = "%d.%d.%d.7" % (20 + i, 30 + i, 40 + i)
        qid = "D%09X" % i
        return ("%s mx postfix/submission/smtpd[6000]: %s: client=unknown[%s], "
                "sasl_method=PLAIN, sasl_username=%s" % (stamp, qid, ip, BOTNET),
                ("rate", qid), ("smtp", BOTNET, ip))


class Poller(object):
    """Polls the store for new events and the botnet's block, timing each."""

    def __init__(self, db, pg):
        self.db = db
        self.pg = pg
        self.seen = {}
        self.last = 0
        self.block_at = None
        self.stop = False
        self.lock = threading.Lock()

    def query(self, sql):
        if self.pg:
            out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-d", self.db,
                                  "-c", sql], capture_output=True, text=True)
            if out.returncode != 0:
                return []
            return [l.split("\t") for l in out.stdout.splitlines() if l]
        try:
            c = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=1)
            try:
                return [[str(x) if x is not None else "" for x in r]
                        for r in c.execute(sql).fetchall()]
            finally:
                c.close()
        except sqlite3.Error:
            return []

    def poll(self):
        rows = self.query(
            "SELECT e.id, u.name, e.source, e.ip, coalesce(e.fid, '') FROM events e "
            "JOIN users u ON u.id = e.user_id WHERE e.id > %d ORDER BY e.id" % self.last)
        now = time.time()
        for r in rows:
            self.last = max(self.last, int(r[0]))
            user, source, ip, fid = r[1], r[2], r[3], r[4]
            if source in ("rate", "bounces"):
                m = re.search(r"[BD][0-9A-F]{9}", fid)
                key = (source, m.group(0) if m else fid)
            else:
                key = (source, user, ip)
            with self.lock:
                self.seen.setdefault(key, []).append(now)
        if self.block_at is None:
            rows = self.query(
                "SELECT count(*) FROM level_changes c JOIN users u ON u.id = c.user_id "
                "WHERE u.name = '%s' AND c.to_level IN ('block', 'lock')" % BOTNET)
            if rows and rows[0][0] not in ("", "0"):
                # After the query that saw it: an upper bound, as for the events.
                self.block_at = time.time()

    def run(self):
        while not self.stop:
            self.poll()
            time.sleep(0.05)


def syslog_stamp(t):
    return time.strftime("%b %e %H:%M:%S", time.localtime(t))


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def tickets(n):
    """n ticket lines as the Python action writes them, for `stream` alone: the same
    traffic's rate, bounce and new-pair login tickets, log times one second apart per
    hundred lines, ending now."""
    traffic = Traffic(False)
    t0 = int(time.time()) - n // 100
    out = []
    i = 0
    while len(out) < n:
        for line in traffic.next_lines("-", 10):
            for key in line[1:]:
                if key is None or len(out) >= n:
                    continue
                i += 1
                source = key[0]
                if source == "rate":
                    user = re.search(r"sasl_username=(\S+)", line[0]).group(1)
                    ip = re.search(r"client=unknown\[([0-9.]+)\]", line[0]).group(1)
                    traffic.last_user[key[1]] = (user, ip)
                    fid = "('%s', '%s')" % (user, key[1])
                elif source == "bounces":
                    user, ip = traffic.last_user[key[1]]
                    fid = "('%s', 'gone@remote.example')" % key[1]
                else:
                    user, ip = key[1], key[2]
                    fid = "('%s', '%s')" % (user, ip)
                out.append(json.dumps({
                    "source": source, "jail": "mailguard-" + source, "user": user, "ip": ip,
                    "time": "%d.0" % (t0 + i // 100), "fid": fid, "count": "1"},
                    separators=(",", ":")))
    sys.stdout.write("\n".join(out) + "\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--tickets":
        return tickets(int(sys.argv[2]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--rate", type=int, default=200, help="lines per second")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--db", required=True, help="SQLite path or postgresql:// URL")
    ap.add_argument("--action", default="f2b_mailguard.py",
                    help="f2b_mailguard.py (Python action) or mailguard (command)")
    ap.add_argument("--backend", default="pyinotify")
    ap.add_argument("--botnet", action="store_true")
    ap.add_argument("--settle", type=int, default=120, help="most seconds to wait after")
    a = ap.parse_args()

    os.makedirs(a.work, exist_ok=True)
    log = os.path.join(a.work, "mail.log")
    open(log, "w").close()
    config = os.path.join(a.work, "config.toml")
    with open(config, "w") as f:
        f.write('database = "%s"\nlocal_dir = "%s"\nserver_name = "bench"\n'
                '[actions]\nnotify = []\nblock = []\nlock = []\n' % (a.db, a.work))
    conf = conf_dir(a.work, a.bin, config, log, a.action, a.backend)
    # The store exists before the first ticket, as after install.
    subprocess.run([a.bin, "--config", config, "status"], check=True,
                   stdout=subprocess.DEVNULL)
    out = open(os.path.join(a.work, "server.out"), "w")
    server = subprocess.Popen(["/usr/bin/fail2ban-server", "-c", conf,
                               "-s", os.path.join(a.work, "run", "f2b.sock"),
                               "-p", os.path.join(a.work, "run", "f2b.pid"),
                               "-x", "-f", "start"],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    result = {}
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            st = client(a.work, "status", "mailguard-imap")
            if "Currently failed" in st.stdout:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("fail2ban did not start: " + open(os.path.join(a.work, "fail2ban.log")).read())
        poller = Poller(a.db, a.db.startswith("postgresql:"))
        pt = threading.Thread(target=poller.run, daemon=True)
        pt.start()
        traffic = Traffic(a.botnet)
        written = {}
        botnet_written = []
        tick = 0.05
        per_tick = a.rate * tick
        owed = 0.0
        start = time.time()
        next_botnet = start + 5
        f = open(log, "a")
        while True:
            now = time.time()
            if now - start >= a.seconds:
                break
            owed += per_tick
            k = int(owed)
            owed -= k
            stamp = syslog_stamp(now)
            lines = traffic.next_lines(stamp, k)
            if a.botnet and now >= next_botnet and traffic.botnet_sent < BOTNET_CROSSING + 4:
                lines.append(traffic.botnet_line(stamp))
                next_botnet = now + 0.2
            f.write("".join(l[0] + "\n" for l in lines))
            f.flush()
            t = time.time()
            for l in lines:
                for key in l[1:]:
                    if key is not None:
                        written.setdefault(key, t)
                if len(l) > 2 and l[2] and l[2][1] == BOTNET:
                    botnet_written.append(t)
            sleep = start + (int((now - start) / tick) + 1) * tick - time.time()
            if sleep > 0:
                time.sleep(sleep)
        wrote_for = time.time() - start
        lines_written = traffic.n + traffic.botnet_sent
        settle_end = time.time() + a.settle
        while time.time() < settle_end:
            with poller.lock:
                if all(k in poller.seen for k in written):
                    break
            time.sleep(0.5)
        time.sleep(2)
        poller.stop = True
        pt.join()
        poller.poll()
        lags = [poller.seen[k][0] - t for k, t in written.items() if k in poller.seen]
        missing = [k for k in written if k not in poller.seen]
        extra = [k for k in poller.seen if k not in written]
        twice = [k for k, v in poller.seen.items() if len(v) > 1]
        f2blog = open(os.path.join(a.work, "fail2ban.log")).read()
        result = {
            "action": a.action,
            "store": "postgresql" if a.db.startswith("postgresql:") else "sqlite",
            "rate": a.rate,
            "lines": lines_written,
            "lines_per_s": round(lines_written / wrote_for, 1),
            "written": len(written),
            "stored": len(written) - len(missing),
            "missing": len(missing),
            "extra": len(extra),
            "twice": len(twice),
            "lag_p50": round(pct(lags, 50), 3) if lags else None,
            "lag_p95": round(pct(lags, 95), 3) if lags else None,
            "lag_max": round(max(lags), 3) if lags else None,
            "expired": f2blog.count("expired bantime"),
            "errors": f2blog.count(" ERROR "),
        }
        if a.botnet:
            crossing = botnet_written[BOTNET_CROSSING - 1] if len(botnet_written) >= BOTNET_CROSSING else None
            result["botnet_block_lag"] = (round(poller.block_at - crossing, 3)
                                          if poller.block_at and crossing else None)
        if missing:
            result["missing_sample"] = [list(k) for k in missing[:5]]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
