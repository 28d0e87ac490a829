# f2b-mailguard: hand each matched SUCCESSFUL login, message or bounce to ONE
# long-lived `f2b-mailguard stream` process, one line per ticket, instead of a shell
# and a process per ticket (action.d/mailguard.conf, which stays for those who want it).
#
# Jail:  action = f2b_mailguard.py[source=smtp]
# (the `.py` is what makes Fail2ban load this file; jail.d/mailguard.conf sets it.)
#
# How it works (docs/fail2ban-transport.md):
#  - ban() only puts the ticket in memory and returns: Fail2ban's own queue never waits
#    on the database. Logins go in one queue, messages and bounces in another, and
#    logins are always sent first: a spam run's volume cannot delay the block signal.
#  - One writer thread per (binary, config), shared by every jail, sends the tickets as
#    JSON lines (every control character escaped, so a user name cannot end its line or
#    add a field) to the child it started, at most WINDOW unacknowledged at a time.
#  - The child stores them in batches and acknowledges each batch ({"done": N}). A
#    ticket leaves memory only once acknowledged (stored, kept in the spool, or refused
#    and counted). If the child dies, the unacknowledged tickets are sent again to a new
#    one; the store keeps a ticket sent twice once (same ticket id, time and count).
#  - At Fail2ban's stop everything still in memory is written to the child and its input
#    closed: the child, in its own session, stores it and exits after Fail2ban has gone.
#  - Reconciling: when Fail2ban moves to a rotated log, the jail's filter is run again
#    (a private copy) over the old file from a position LOOKBACK behind its last known
#    reading, to its end, and over the new file up to where the jail has read. Messages
#    and bounces are resent as the live path would send them (the store keeps a resent
#    ticket once); logins go through the jail's own ban list, so a pair the jail
#    reported within its bantime is not reported again.
#
# Runs inside fail2ban-server: standard library only, nothing blocks ban(), nothing
# raises in __init__ (it would stop the whole server), and no log line names a user.

import collections
import json
import os
import subprocess
import sys
import threading
import time
import types

from fail2ban.server.action import ActionBase
from fail2ban.server.actions import Actions
# md5sum: Fail2ban's own hash of a log's first line (in 1.0.2 it is in fact SHA-1).
from fail2ban.server.filter import Filter, md5sum
from fail2ban.server.ticket import BanTicket, FailTicket

# Set by install.sh to the installed binary and config; a jail may pass its own
# (binary=..., config=...).
BINARY = "/usr/local/bin/f2b-mailguard"
CONFIG = "/etc/f2b-mailguard/config.toml"

# Logins (the block signal) jump the queue; rate and bounces are volume.
LOGIN_SOURCES = frozenset(("smtp", "smtp-refused", "imap", "pop3", "webmail"))
# Tickets sent and not yet acknowledged: how far a login can be behind volume
# already handed to the child.
WINDOW = 256
# Tickets held in memory while no child takes them (binary missing, spool full).
MAX_WAITING = 200000
# How long Fail2ban's stop waits for the last tickets to reach the child.
STOP_WAIT = 30.0
# Reconciling: how often the jail's reading position is looked at, and how far behind
# its last known position a re-read starts (a bounce needs its submission line, which
# Postfix logs shortly before).
POLL = 1.0
LOOKBACK = 60.0
# Where a rotated log is looked for (logrotate's and newsyslog's first generation).
ROTATED = (".1", ".0")

# Fail2ban runs this file again for every action instance and reload, so what every
# jail shares lives in a module of its own that survives that.
_SHARED = sys.modules.setdefault(
    "_f2b_mailguard_shared", types.ModuleType("_f2b_mailguard_shared"))
if not hasattr(_SHARED, "lock"):
    _SHARED.lock = threading.Lock()
    _SHARED.transports = {}


class Transport(object):
    """The child process and the tickets waiting for it, shared by the jails."""

    def __init__(self, argv, log):
        self.argv = argv
        self.log = log
        self.cond = threading.Condition()
        self.logins = collections.deque()
        self.others = collections.deque()
        # (line, is_login), in the order sent to the current child.
        self.inflight = collections.deque()
        self.users = 0
        self.stopping = False
        self.thread = None
        self.child = None
        # The current child's output ended: it is gone or going.
        self.child_gone = False
        self.dropped = 0
        self.stats = {"sent": 0, "done": 0, "stored": 0, "duplicates": 0,
                      "kept": 0, "refused": 0, "started": 0}

    # Called by the actions (any thread).

    def put(self, line, login):
        with self.cond:
            if len(self.logins) + len(self.others) >= MAX_WAITING:
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    self.log.error(
                        "f2b-mailguard: %d tickets waiting, none taken: %d dropped "
                        "(is `%s` working?)", MAX_WAITING, self.dropped, self.argv[0])
                return
            (self.logins if login else self.others).append(line)
            self.cond.notify_all()

    def acquire(self):
        with self.cond:
            self.users += 1
            self.stopping = False
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="f2b/mailguard-writer", daemon=True)
                self.thread.start()

    def release(self):
        with self.cond:
            self.users -= 1
            if self.users > 0:
                return
            self.stopping = True
            self.cond.notify_all()
            thread = self.thread
        if thread is not None:
            thread.join(STOP_WAIT)
        with self.cond:
            left = len(self.logins) + len(self.others)
        if left:
            self.log.error("f2b-mailguard: %d tickets not handed over at stop", left)

    def waiting(self):
        with self.cond:
            return len(self.logins) + len(self.others) + len(self.inflight)

    # The writer thread.

    def _run(self):
        pause = 0.2
        while True:
            with self.cond:
                if self.stopping and not (self.logins or self.others or self.inflight):
                    break
            if self.child is None:
                if not self._spawn():
                    time.sleep(pause)
                    pause = min(pause * 2, 10.0)
                    continue
            if self._pump():
                pause = 0.2
                continue
            # The child is gone: what it did not acknowledge goes first to the next one.
            self._reap()
            with self.cond:
                for line, login in reversed(self.inflight):
                    (self.logins if login else self.others).appendleft(line)
                self.inflight.clear()
            time.sleep(pause)
            pause = min(pause * 2, 10.0)
        # All acknowledged: the child exits at the end of its input.
        self._close()
        with self.cond:
            child, self.child = self.child, None
        if child is not None:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def _spawn(self):
        try:
            child = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
        except OSError as e:
            self.log.error("f2b-mailguard: cannot start %s: %s", self.argv[0], e)
            return False
        with self.cond:
            self.child = child
            self.child_gone = False
            self.stats["started"] += 1
        threading.Thread(target=self._acks, args=(child,),
                         name="f2b/mailguard-acks", daemon=True).start()
        threading.Thread(target=self._stderr, args=(child,),
                         name="f2b/mailguard-err", daemon=True).start()
        return True

    def _pump(self):
        """Sends what waits, WINDOW at a time; False once the child is gone."""
        with self.cond:
            while True:
                if self.child_gone:
                    return False
                room = WINDOW - len(self.inflight)
                waiting = self.logins or self.others
                if self.stopping:
                    if not waiting:
                        break
                    # Everything to the child, which outlives Fail2ban.
                    room = len(self.logins) + len(self.others)
                if waiting and room > 0:
                    break
                self.cond.wait(1.0)
            lines = []
            for queue, login in ((self.logins, True), (self.others, False)):
                while queue and len(lines) < room:
                    line = queue.popleft()
                    lines.append(line)
                    self.inflight.append((line, login))
            child = self.child
        if not lines:
            # Stopping, everything sent: close the input, the child finishes and exits.
            self._close()
            with self.cond:
                while self.inflight and not self.child_gone:
                    self.cond.wait(1.0)
                return not self.child_gone or not self.inflight
        try:
            child.stdin.write("".join(lines).encode("ascii"))
            child.stdin.flush()
        except (OSError, ValueError):
            # Its input closed: it is exiting; its acknowledgements tell the rest.
            self._kill()
            with self.cond:
                while not self.child_gone:
                    self.cond.wait(1.0)
            return False
        with self.cond:
            self.stats["sent"] += len(lines)
        return True

    def _acks(self, child):
        try:
            for raw in child.stdout:
                try:
                    ack = json.loads(raw)
                    n = int(ack["done"])
                except (ValueError, KeyError, TypeError):
                    self.log.error("f2b-mailguard: unexpected answer from the child")
                    self._kill()
                    break
                with self.cond:
                    for _ in range(min(n, len(self.inflight))):
                        self.inflight.popleft()
                    for k in ("done", "stored", "duplicates", "kept", "refused"):
                        self.stats[k] += int(ack.get(k, 0))
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            if self.child is child:
                self.child_gone = True
            self.cond.notify_all()

    def _stderr(self, child):
        try:
            for raw in child.stderr:
                self.log.warning("%s", raw.decode("utf-8", "replace").rstrip()[:500])
        except (OSError, ValueError):
            pass

    def _kill(self):
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.kill()
            except OSError:
                pass

    def _reap(self):
        child = self.child
        if child is None:
            return
        try:
            rc = child.wait(10)
        except subprocess.TimeoutExpired:
            self._kill()
            rc = child.wait()
        self.log.warning("f2b-mailguard: %s stream exited (%s); %d tickets sent again",
                         self.argv[0], rc, len(self.inflight))
        with self.cond:
            self.child = None

    def _close(self):
        child = self.child
        if child is not None and child.stdin is not None and not child.stdin.closed:
            try:
                child.stdin.close()
            except OSError:
                pass


def _transport(binary, config, log):
    key = (binary, config)
    with _SHARED.lock:
        t = _SHARED.transports.get(key)
        if t is None:
            t = Transport([binary, "--config", config, "stream"], log)
            _SHARED.transports[key] = t
        return t


class MailguardAction(ActionBase):
    # Read by Fail2ban in its re-ban path, without a default.
    banEpoch = 0

    def __init__(self, jail, name, source="smtp", binary=BINARY, config=CONFIG,
                 reconcile="yes", **kwargs):
        super(MailguardAction, self).__init__(jail, name)
        # Tickets restored from Fail2ban's database at its start were stored already.
        self.norestored = True
        self.source = source
        self.binary = binary
        self.config = config
        self.login = source in LOGIN_SOURCES
        self.transport = None
        self.reconciler = Reconciler(self) if reconcile != "no" else None

    def start(self):
        if self.transport is None:
            self.transport = _transport(self.binary, self.config, self._logSys)
            self.transport.acquire()
        if self.reconciler is not None:
            self.reconciler.start()

    def stop(self):
        if self.reconciler is not None:
            self.reconciler.stop()
        t, self.transport = self.transport, None
        if t is not None:
            t.release()

    def ban(self, aInfo):
        data = aInfo["F-*"] or {}
        user = data.get("user")
        # A ticket without a user is a bounce of mail no SASL user sent: not ours.
        if not user:
            return
        if self.transport is None:
            self.start()
        line = json.dumps({
            "source": self.source,
            "jail": self._jail.name,
            "user": str(user),
            "ip": str(aInfo["ip"]),
            "time": str(aInfo["time"]),
            "fid": str(aInfo["fid"]),
            "count": str(aInfo["failures"]),
        }, ensure_ascii=True, separators=(",", ":")) + "\n"
        self.transport.put(line, self.login)

    def reban(self, aInfo):
        return self.ban(aInfo)

    def unban(self, aInfo):
        # The end of a "ban" only means the ticket was quiet for bantime.
        pass

    def flush(self):
        # Nothing to undo: a restart must not turn into one unban per ticket.
        return True

    # Both needed, or `fail2ban-client reload` removes the action.
    def clearAllParams(self):
        pass

    def reload(self, source=None, binary=None, config=None, reconcile=None, **kwargs):
        if source is not None:
            self.source = source
            self.login = source in LOGIN_SOURCES
        paths = (binary or self.binary, config or self.config)
        if paths != (self.binary, self.config):
            running = self.transport is not None
            self.stop()
            self.binary, self.config = paths
            if running:
                self.start()


def _first_line_hash(path):
    """Fail2ban's identity of a log file: the hash of its first complete line."""
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError:
        return None
    if line == line.rstrip(b"\r\n"):
        return None
    return md5sum(line).hexdigest()


class Reconciler(object):
    """Re-reads what a log rotation kept the jail from reading."""

    def __init__(self, action):
        self.action = action
        self.jail = action._jail
        self.log = action._logSys
        # path -> deque of (time, inode, first-line hash, position) of the jail's reading.
        self.rings = {}
        self.halt = threading.Event()
        self.thread = None

    def start(self):
        if self.thread is not None and self.thread.is_alive():
            return
        self.halt.clear()
        self.thread = threading.Thread(
            target=self._run, name="f2b/mailguard-reconcile", daemon=True)
        self.thread.start()

    def stop(self):
        self.halt.set()
        thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WAIT)

    def _run(self):
        while not self.halt.wait(POLL):
            try:
                self.tick()
            except Exception as e:  # never let one bad look end the watching
                self.log.error("f2b-mailguard: reconciling failed: %r", e)

    def tick(self):
        flt = self.jail.filter
        # File backends only: the journal has no rotation to lose a tail to.
        if not hasattr(flt, "getLog"):
            return
        now = time.time()
        for path in flt.getLogPaths():
            c = flt.getLog(path)
            if c is None:
                continue
            snap = (now, getattr(c, "_FileContainer__ino", None), c.getHash(), c.getPos())
            ring = self.rings.setdefault(path, collections.deque())
            if ring:
                last = ring[-1]
                # Fail2ban has moved to another file: a new inode, or (copytruncate) the
                # same inode with another first line.
                if last[1] != snap[1] or (last[2] and last[2] != snap[2]):
                    self.reconcile(flt, path, ring)
                    ring.clear()
                    # The new file from its start: a later re-read keeps the context
                    # (submission lines) of what was reconciled here.
                    snap = (now, snap[1], c.getHash(), 0)
            ring.append(snap)
            # Keep the newest snapshot that is at least LOOKBACK old, and the later ones.
            while len(ring) > 1 and ring[1][0] <= now - LOOKBACK:
                ring.popleft()

    def reconcile(self, flt, path, ring):
        last = ring[-1]
        start = next(s[3] for s in ring if s[1] == last[1] and s[2] in (last[2], ""))
        shadow = self._shadow(flt)
        sent = [0, 0]
        rotated = self._rotated(path, last)
        if rotated is None:
            self.log.error("f2b-mailguard: %s was rotated but no %s holds its old "
                           "content: its unread tail is not reconciled", path,
                           "/".join(ROTATED))
        else:
            self._read(flt, shadow, rotated, start, None, sent)
        c = flt.getLog(path)
        self._read(flt, shadow, path, 0, c.getPos() if c is not None else 0, sent)
        self.log.info("f2b-mailguard: %s rotated; reconciled %d lines, %d tickets "
                      "handed over again", path, sent[0], sent[1])

    def _rotated(self, path, last):
        for suffix in ROTATED:
            name = path + suffix
            try:
                ino = os.stat(name).st_ino
            except OSError:
                continue
            if ino == last[1] or (last[2] and _first_line_hash(name) == last[2]):
                return name
        return None

    @staticmethod
    def _shadow(flt):
        """A private copy of the jail's filter: same regexes, own multi-line state."""
        s = Filter(None, useDns=flt.getUseDns())
        s.setLogTimeZone(flt.getLogTimeZone())
        pattern = flt.getDatePattern()
        if pattern and pattern[0]:
            s.setDatePattern(pattern[0])
        s.setMaxLines(flt.getMaxLines())
        if flt.prefRegex is not None:
            s.prefRegex = flt.prefRegex.getRegex()
        for r in flt.getFailRegex():
            s.addFailRegex(r)
        for r in flt.getIgnoreRegex():
            s.addIgnoreRegex(r)
        # Every line at its own log time, however old: the jail ignores none it reads.
        s.checkFindTime = False
        return s

    def _read(self, flt, shadow, name, start, end, sent):
        enc = flt.getLogEncoding()
        try:
            f = open(name, "rb")
        except OSError as e:
            self.log.error("f2b-mailguard: cannot reconcile %s: %s", name, e)
            return
        with f:
            f.seek(start)
            while end is None or f.tell() < end:
                raw = f.readline()
                # An unfinished last line is the jail's to read once it ends.
                if not raw.endswith(b"\n"):
                    break
                sent[0] += 1
                line = raw.decode(enc, "replace").rstrip("\r\n")
                for (_, fid, when, fail) in shadow.processLine(line):
                    sent[1] += self._ticket(flt, fid, when, fail)

    def _ticket(self, flt, fid, when, fail):
        # As the jail's own processing: never a time in the future.
        when = min(when, time.time())
        tick = FailTicket(fid, when, data=fail)
        if flt._inIgnoreIPList(fid, tick):
            return 0
        if self.action.login:
            # Through the jail's ban list: a pair it reported within its bantime is
            # "already banned", one it missed is reported now, and the jail then treats
            # the pair's next lines as it would have.
            if flt.failManager.addFailure(tick) >= flt.failManager.getMaxRetry():
                flt.performBan(fid)
            return 1
        # A message or bounce id is unique: resent exactly as the live path sends it
        # (a first failure of its id: one attempt), the store keeps it once.
        tick.setRetry(1)
        self.action.ban(Actions.ActionInfo(BanTicket.wrap(tick), self.jail))
        return 1


Action = MailguardAction
