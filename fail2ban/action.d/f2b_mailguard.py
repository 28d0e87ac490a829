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
#  - Reconciling: when Fail2ban moves to a rotated log (NAME.1, or NAME.1.gz if it was
#    compressed at once), the jail's filter is run again (a private copy) over the old
#    file from a position LOOKBACK behind its last known reading, to its end, and over
#    the new file up to where the jail has read. Messages and bounces are resent as the
#    live path would send them (the store keeps a resent ticket once); logins go
#    through the jail's own ban list, so a pair the jail reported within its bantime is
#    not reported again. What the copy still holds of unfinished multi-line matches
#    (a submission waiting for its bounce) goes to the jail's own filter, and the copy
#    reads on beside the jail for FOLLOW seconds.
#  - Multi-line memory: each jail's filter keeps CONTEXT_ENTRIES unfinished matches
#    instead of Fail2ban's 100, which a spam run's messages in flight outnumber.
#  - Checkpoints: every POLL, each log's position (inode, first-line hash, offset)
#    becomes a checkpoint once every ticket from the lines before it has been through
#    the jail's queue and acknowledged; it is written beside Fail2ban's database with
#    the login pairs reported (the ban list). At the next start (a restart, a crash),
#    the ban list is put back and each log re-read from its checkpoint: what Fail2ban
#    dropped from its queue, and what this process held unacknowledged, is handed over.
#    With the journal backend the checkpoint is the cursor of the last entry whose
#    tickets were acknowledged, and the journal is re-read from it up to where Fail2ban
#    goes on (its saved time, or findtime back).
#
# Runs inside fail2ban-server: standard library only, nothing blocks ban(), nothing
# raises in __init__ (it would stop the whole server), and no log line names a user.

import collections
import copy
import gzip
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
from fail2ban.server.ipdns import IPAddr
from fail2ban.server.ticket import BanTicket, FailTicket
from fail2ban.server.utils import Utils

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
# After a re-read, how long its filter copy goes on reading where the jail reads: the
# jail may have read a line while the context was being handed to it.
FOLLOW = 10.0
# Where a rotated log is looked for (logrotate's and newsyslog's first generation,
# plain, then compressed at once: `compress` without `delaycompress`).
ROTATED = (".1", ".0", ".1.gz", ".0.gz")
# A jail's unfinished multi-line matches (a message's submission line, waiting for its
# bounce): Fail2ban keeps 100, fewer than the messages a spam run has in flight, and a
# bounce past them is lost. For as long as Fail2ban keeps them.
CONTEXT_ENTRIES = 10000
CONTEXT_TIME = 5 * 60
# Fail2ban's own name for the journal's reading position; the checkpoint's too.
JOURNAL = "systemd-journal"

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
        # (number, line, is_login), in the order sent to the current child.
        self.inflight = collections.deque()
        self.users = 0
        self.stopping = False
        self.thread = None
        self.child = None
        # The current child's output ended: it is gone or going.
        self.child_gone = False
        self.dropped = 0
        # Every line put gets the next number; the first one dropped stays the lowest
        # never acknowledged, so no checkpoint passes it.
        self.seq = 0
        self.lost = None
        self.stats = {"sent": 0, "done": 0, "stored": 0, "duplicates": 0,
                      "kept": 0, "refused": 0, "started": 0}

    # Called by the actions (any thread).

    def put(self, line, login):
        """Queues one line; returns its number."""
        with self.cond:
            self.seq += 1
            if len(self.logins) + len(self.others) >= MAX_WAITING:
                self.dropped += 1
                if self.lost is None:
                    self.lost = self.seq
                if self.dropped % 1000 == 1:
                    self.log.error(
                        "f2b-mailguard: %d tickets waiting, none taken: %d dropped "
                        "(is `%s` working?)", MAX_WAITING, self.dropped, self.argv[0])
                return self.seq
            (self.logins if login else self.others).append((self.seq, line))
            self.cond.notify_all()
            return self.seq

    def last(self):
        with self.cond:
            return self.seq

    def acked_below(self):
        """The lowest number not yet acknowledged: every line below it is."""
        with self.cond:
            low = [q[0][0] for q in (self.logins, self.others) if q]
            low.extend(seq for seq, _, _ in self.inflight)
            if self.lost is not None:
                low.append(self.lost)
            return min(low) if low else self.seq + 1

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
                for seq, line, login in reversed(self.inflight):
                    (self.logins if login else self.others).appendleft((seq, line))
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
                    seq, line = queue.popleft()
                    lines.append(line)
                    self.inflight.append((seq, line, login))
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
        # Login pairs reported: fid -> (log time, line number), kept across a restart
        # as the jail's ban list once acknowledged.
        self.lock = threading.Lock()
        self.reported = {}
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
        seq = self.transport.put(line, self.login)
        # A pair's id is Fail2ban's "raw" address wrapping the (user, address) tuple.
        fid = getattr(aInfo["fid"], "ntoa", aInfo["fid"])
        if self.login and isinstance(fid, tuple):
            with self.lock:
                self.reported[fid] = (float(aInfo["time"]), seq)

    def restore(self, fid, when):
        """A pair reported before a restart, back in the jail's ban list for the rest
        of its bantime, so its next lines are "already banned" as they were."""
        ticket = BanTicket(IPAddr(fid), when)
        ticket.banned = True
        if self._jail.actions.banManager.addBanTicket(ticket):
            with self.lock:
                self.reported[fid] = (when, 0)

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


def _first_line_hash(f):
    """Fail2ban's identity of a log file: the hash of its first complete line."""
    line = f.readline()
    if line == line.rstrip(b"\r\n"):
        return None
    return md5sum(line).hexdigest()


def _inode(container):
    return getattr(container, "_FileContainer__ino", None)


def _journal_cursor(flt):
    """Wraps a journal filter's processing of an entry, once: the filter's
    _mailguard_cursor[0] is the cursor of the last entry processed (its tickets are in
    the jail's queue then)."""
    if not hasattr(flt, "getJournalReader") or hasattr(flt, "_mailguard_cursor"):
        return
    box = flt._mailguard_cursor = [None, None]
    fmt, process = flt.formatJournalEntry, flt.processLineAndAdd

    def formatJournalEntry(entry):
        box[1] = entry.get("__CURSOR")
        return fmt(entry)

    def processLineAndAdd(line, date=None):
        process(line, date)
        box[0] = box[1]

    flt.formatJournalEntry = formatJournalEntry
    flt.processLineAndAdd = processLineAndAdd


class _Sequence(object):
    """Counts the jail's tickets through its queue, by wrapping the jail's own put and
    get: `puts` put by the filter, `finished` taken by the actions thread and handled
    to the end (it asks for the next one only then). The queue is first in, first out,
    so once `finished` reaches N, the first N tickets have been through every action."""

    def __init__(self, jail):
        self.lock = threading.Lock()
        self.puts = 0
        self.popped = 0
        self.finished = 0
        put, get = jail.putFailTicket, jail.getFailTicket

        def putFailTicket(ticket):
            put(ticket)
            with self.lock:
                self.puts += 1

        def getFailTicket():
            with self.lock:
                self.finished = self.popped
            ticket = get()
            if ticket:
                with self.lock:
                    self.popped += 1
            return ticket

        jail.putFailTicket = putFailTicket
        jail.getFailTicket = getFailTicket
        # The actions thread takes at most banPrecedence tickets in a row and then waits
        # on the queue being empty without asking for another: its last one is finished
        # then too. (Only that wait asks, in Fail2ban 1.0.2.)
        queue = jail._Jail__queue
        empty = queue.empty

        def between_tickets():
            with self.lock:
                self.finished = self.popped
            return empty()

        queue.empty = between_tickets

    @staticmethod
    def of(jail):
        """The jail's counter; installed only before the jail runs (counted from its
        first ticket), so an action added to a running jail has none."""
        seq = getattr(jail, "_mailguard_sequence", None)
        if seq is None and not jail.isAlive():
            seq = _Sequence(jail)
            jail._mailguard_sequence = seq
        return seq


class _Context(Utils.Cache):
    """Fail2ban's multi-line cache, larger. Never empty to Fail2ban's eye: its filter
    replaces an empty cache with a default one of its own."""

    def __bool__(self):
        return True


def _widen_context(flt):
    """The jail's filter keeps CONTEXT_ENTRIES unfinished matches, and what it held."""
    if type(getattr(flt, "_Filter__mlfidCache", None)).__name__ == "_Context":
        return
    held = flt.mlfidCache
    flt._Filter__mlfidCache = _Context(maxCount=CONTEXT_ENTRIES, maxTime=CONTEXT_TIME)
    for key, (value, _) in list(held._cache.items()):
        if flt.mlfidCache.get(key) is None:
            flt.mlfidCache.set(key, value)


class Reconciler(object):
    """Re-reads what Fail2ban did not hand over: the tail of a rotated log, and after a
    restart or a crash everything past the checkpoint (the point up to which every
    ticket of the log was acknowledged)."""

    def __init__(self, action):
        self.action = action
        self.jail = action._jail
        self.log = action._logSys
        # path -> deque of (time, inode, first-line hash, position) of the jail's reading.
        self.rings = {}
        # path -> deque of [inode, hash, position, tickets put by then, line number
        # once those were handed over]: checkpoints waiting for their acknowledgement.
        self.pending = {}
        # path -> deque of (time, inode, hash, position) acknowledged, LOOKBACK of them.
        self.committed = {}
        self.saved = None
        self.resumed = False
        # path -> [filter copy, inode, position, until, [lines, tickets]] after a re-read.
        self.follow = {}
        self.halt = threading.Event()
        self.thread = None
        self.sequence = None
        self.file = None
        try:
            self.file = self._checkpoint_file()
            if self.file is not None:
                self.sequence = _Sequence.of(self.jail)
                if self.sequence is not None:
                    _journal_cursor(self.jail.filter)
        except Exception:  # nothing may raise here; no checkpoint then
            pass
        if self.sequence is None:
            self.file = None

    def _checkpoint_file(self):
        """Beside Fail2ban's own database, which keeps its reading positions: with
        Fail2ban's database in memory it starts a findtime back, and there is none."""
        name = getattr(self.jail.database, "_dbFilename", None)
        if not name or name == ":memory:":
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.jail.name)
        return os.path.join(os.path.dirname(os.path.abspath(name)), "f2b-mailguard",
                            safe + ".json")

    def start(self):
        if self.thread is not None and self.thread.is_alive():
            return
        try:
            _widen_context(self.jail.filter)
        except Exception as e:
            self.log.error("f2b-mailguard: %s keeps Fail2ban's 100 multi-line matches: "
                           "%r", self.jail.name, e)
        if self.file is not None and not self.resumed:
            self.resumed = True
            try:
                self.resume()
            except Exception as e:
                self.log.error("f2b-mailguard: resuming from the checkpoint failed: %r", e)
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

    def resume(self):
        """At the action's start, in the jail's actions thread before it takes any
        ticket: the ban list back, then every log re-read from its checkpoint."""
        try:
            with open(self.file) as f:
                state = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            self.log.error("f2b-mailguard: checkpoint %s unreadable, not resumed: %s",
                           self.file, e)
            return
        for ban in state.get("bans", ()):
            fid, when = (ban + [None, None])[:2] if isinstance(ban, list) else (0, 0)
            if (isinstance(fid, list) and all(isinstance(x, str) for x in fid)
                    and isinstance(when, (int, float))):
                self.action.restore(tuple(fid), float(when))
        flt = self.jail.filter
        s = state.get("logs", {}).get(JOURNAL)
        if (hasattr(flt, "getJournalReader") and isinstance(s, dict)
                and all(isinstance(s.get(k), str) for k in ("pos", "ctx"))):
            self.committed[JOURNAL] = collections.deque(
                [(s.get("since") or 0, None, None, s["ctx"]),
                 (time.time(), None, None, s["pos"])])
            sent = self._read_journal(flt, s["ctx"], s["pos"])
            self.log.info("f2b-mailguard: %s resumed %s at its checkpoint; reconciled "
                          "%d lines, %d tickets handed over again", self.jail.name,
                          JOURNAL, sent[0], sent[1])
        if not hasattr(flt, "getLog"):
            return
        for path, s in state.get("logs", {}).items():
            c = flt.getLog(path)
            ino, hsh, pos, ctx, since = (s.get(k) for k in
                                         ("ino", "hash", "pos", "ctx", "since"))
            if c is None or not all(isinstance(v, int) for v in (ino, pos, ctx)):
                continue
            self.committed[path] = collections.deque(
                [(since or 0, ino, hsh, ctx), (time.time(), ino, hsh, pos)])
            # Up to where Fail2ban goes on (its own saved position, or further if it
            # has read on already): the tickets it read there and dropped are past pos.
            sent = self.reconcile(flt, path, (ino, hsh), ctx, pos, c.getPos())
            self.log.info("f2b-mailguard: %s resumed %s at its checkpoint; reconciled "
                          "%d lines, %d tickets handed over again", self.jail.name, path,
                          sent[0], sent[1])

    def tick(self):
        flt = self.jail.filter
        now = time.time()
        # Rotation: file backends only, the journal has none to lose a tail to.
        for path in (flt.getLogPaths() if hasattr(flt, "getLog") else ()):
            c = flt.getLog(path)
            if c is None:
                continue
            self._follow(flt, path, c, now)
            snap = (now, _inode(c), c.getHash(), c.getPos())
            self._candidate(flt, path, snap)
            ring = self.rings.setdefault(path, collections.deque())
            if ring:
                last = ring[-1]
                # Fail2ban has moved to another file: a new inode, or (copytruncate) the
                # same inode with another first line.
                if last[1] != snap[1] or (last[2] and last[2] != snap[2]):
                    start = next(s[3] for s in ring
                                 if s[1] == last[1] and s[2] in (last[2], ""))
                    sent = self.reconcile(flt, path, last[1:3], start, start, c.getPos())
                    self.log.info("f2b-mailguard: %s %s rotated; reconciled %d lines, "
                                  "%d tickets handed over again", self.jail.name, path,
                                  sent[0], sent[1])
                    ring.clear()
                    # The new file from its start: a later re-read keeps the context
                    # (submission lines) of what was reconciled here.
                    snap = (now, snap[1], c.getHash(), 0)
            ring.append(snap)
            # Keep the newest snapshot that is at least LOOKBACK old, and the later ones.
            while len(ring) > 1 and ring[1][0] <= now - LOOKBACK:
                ring.popleft()
        cursor = getattr(flt, "_mailguard_cursor", (None,))[0]
        if cursor:
            self._candidate(flt, JOURNAL, (now, None, None, cursor))
        self._commit(now)

    def _candidate(self, flt, path, snap):
        """The jail's position as a checkpoint to be: every line before it was read and
        its ticket put (Fail2ban moves the position after processing the lines)."""
        if self.file is None:
            return
        puts = self.sequence.puts
        # A stopping filter leaves a line read but not processed.
        if not flt.active:
            return
        q = self.pending.setdefault(path, collections.deque())
        if q and q[-1][4] is None and q[-1][3] == puts and q[-1][:2] == list(snap[1:3]):
            q[-1][2] = snap[3]
        elif not q or q[-1][:3] != list(snap[1:]):
            q.append([snap[1], snap[2], snap[3], puts, None])

    def _commit(self, now):
        """Checkpoints whose tickets are all acknowledged, written to the file."""
        t = self.action.transport
        if self.file is None or t is None:
            return
        finished = self.sequence.finished
        last = t.last()
        for q in self.pending.values():
            for c in q:
                if c[4] is None and finished >= c[3]:
                    c[4] = last
        below = t.acked_below()
        for path, q in self.pending.items():
            while q and q[0][4] is not None and q[0][4] < below:
                c = q.popleft()
                ring = self.committed.setdefault(path, collections.deque())
                ring.append((now, c[0], c[1], c[2]))
                while len(ring) > 1 and ring[1][0] <= now - LOOKBACK:
                    ring.popleft()
        bantime = self.jail.actions.getBanTime()
        with self.action.lock:
            for fid in [f for f, (w, _) in self.action.reported.items()
                        if w + bantime < now]:
                del self.action.reported[fid]
            bans = sorted([list(f), w] for f, (w, seq) in self.action.reported.items()
                          if seq < below)
        logs = {}
        for path, ring in self.committed.items():
            first, newest = ring[0], ring[-1]
            # The context (a bounce's submission line) from LOOKBACK before, same file.
            ctx = first if first[1:3] == newest[1:3] else newest
            logs[path] = {"ino": newest[1], "hash": newest[2], "pos": newest[3],
                          "ctx": ctx[3], "since": ctx[0]}
        text = json.dumps({"logs": logs, "bans": bans}, sort_keys=True)
        if text != self.saved:
            self._write(text)

    def _write(self, text):
        tmp = self.file + ".tmp"
        try:
            os.makedirs(os.path.dirname(self.file), mode=0o700, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.file)
            self.saved = text
        except OSError as e:
            if self.saved is not False:
                self.log.error("f2b-mailguard: cannot write checkpoint %s: %s",
                               self.file, e)
            self.saved = False

    def reconcile(self, flt, path, ident, start, send_from, end):
        """Re-reads the file `ident` (inode, first-line hash) from `start`, handing over
        what lines from `send_from` on give, to `end` if it is still `path`; else to its
        end, and then the file now at `path` from its start to `end`. Returns [lines,
        tickets]."""
        shadow = self._shadow(flt)
        sent = [0, 0]
        c = flt.getLog(path)
        if c is not None and _inode(c) == ident[0] and (not ident[1]
                                                        or c.getHash() == ident[1]):
            self._read_path(flt, shadow, path, start, send_from, end, sent)
            return sent
        old = self._rotated(path, ident)
        if old is None:
            self.log.error("f2b-mailguard: %s was rotated but no %s holds its old "
                           "content: its unread tail is not reconciled", path,
                           "/".join(ROTATED))
        else:
            with old:
                self._read(flt, shadow, old, start, send_from, None, sent)
        self._read_path(flt, shadow, path, 0, 0, end, sent)
        self._hand_over(flt, shadow, path, end)
        return sent

    def _hand_over(self, flt, shadow, path, end):
        """The copy's unfinished matches to the jail's filter, and the copy kept reading
        the file at `path` from `end` for FOLLOW: a line the jail read while the context
        was on its way is matched by the copy."""
        self._hand_context(flt, shadow)
        try:
            ino = os.stat(path).st_ino
        except OSError:
            return
        self.follow[path] = [shadow, ino, end, time.time() + FOLLOW, [0, 0]]

    def _follow(self, flt, path, c, now):
        f = self.follow.get(path)
        if f is None:
            return
        shadow, ino, pos, until, sent = f
        try:
            same = _inode(c) == ino and os.stat(path).st_ino == ino
        except OSError:
            same = False
        end = c.getPos()
        if same and end > pos:
            self._read_path(flt, shadow, path, pos, pos, end, sent)
            f[2] = end
        if not same or now >= until:
            del self.follow[path]
            self.log.info("f2b-mailguard: %s %s followed after the re-read: %d lines, "
                          "%d tickets handed over again", self.jail.name, path,
                          sent[0], sent[1])

    @staticmethod
    def _hand_context(flt, shadow):
        """What the re-read learnt of unfinished multi-line matches (a message's
        submission line, which its later bounce needs) goes to the jail's own filter,
        which never read those lines: a bounce written after the re-read's end then
        matches there as it would have. Only into free room: the jail's own entries
        are never pushed out."""
        learnt = shadow.mlfidCache
        live = flt.mlfidCache
        # The shadow is this thread's alone: its cache needs no lock.
        for key, (value, _) in reversed(list(learnt._cache.items())):
            if len(live) >= live.maxCount:
                break
            if live.get(key) is None:
                live.set(key, copy.deepcopy(value))

    @staticmethod
    def _rotated(path, ident):
        """The rotated file holding `ident`'s content, open at its start, or None."""
        for suffix in ROTATED:
            name = path + suffix
            try:
                f = gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")
            except OSError:
                continue
            try:
                # A compressed copy has an inode of its own: known by its first line.
                if ((not name.endswith(".gz") and os.fstat(f.fileno()).st_ino == ident[0])
                        or (ident[1] and _first_line_hash(f) == ident[1])):
                    f.seek(0)
                    return f
            except (OSError, EOFError):
                pass
            f.close()
        return None

    @staticmethod
    def _shadow(flt):
        """A private copy of the jail's filter: same regexes, own multi-line state."""
        s = Filter(None, useDns=flt.getUseDns())
        _widen_context(s)
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

    def _read_path(self, flt, shadow, name, start, send_from, end, sent):
        try:
            f = open(name, "rb")
        except OSError as e:
            self.log.error("f2b-mailguard: cannot reconcile %s: %s", name, e)
            return
        with f:
            self._read(flt, shadow, f, start, send_from, end, sent)

    def _read(self, flt, shadow, f, start, send_from, end, sent):
        """Lines from `start` to `end` (None: the end) through the shadow filter; lines
        before `send_from` only give it context."""
        enc = flt.getLogEncoding()
        try:
            f.seek(start)
            while True:
                pos = f.tell()
                if end is not None and pos >= end:
                    break
                raw = f.readline()
                # An unfinished last line is the jail's to read once it ends.
                if not raw.endswith(b"\n"):
                    break
                sent[0] += 1
                line = raw.decode(enc, "replace").rstrip("\r\n")
                for (_, fid, when, fail) in shadow.processLine(line):
                    if pos >= send_from:
                        sent[1] += self._ticket(flt, fid, when, fail)
        except (OSError, EOFError) as e:
            self.log.error("f2b-mailguard: reconciling stopped early: %s", e)

    def _read_journal(self, flt, ctx, pos):
        """Re-reads the jail's journal (its files, its matches) from the entry `ctx` to
        where Fail2ban goes on, handing over what the entries after `pos` give."""
        from fail2ban.helpers import extractOptions
        from fail2ban.server.filtersystemd import FilterSystemd, journal
        # As Fail2ban's start: from its saved time, at least findtime back (it reads
        # the entries at that time again itself).
        end = max(self.jail.database.getJournalPos(self.jail, JOURNAL) or 0,
                  time.time() - flt.getFindTime())
        reader = journal.Reader(
            **FilterSystemd._getJournalArgs(extractOptions(self.jail.backend)[1]))
        shadow = self._shadow(flt)
        sent, send, reached = [0, 0], False, False
        try:
            for match in flt.getJournalMatch():
                for element in match:
                    reader.add_match(element)
                reader.add_disjunction()
            reader.seek_cursor(ctx)
            while True:
                entry = reader.get_next()
                if not entry:
                    break
                # The class's own formatting: the jail's is wrapped to note cursors.
                line, tm = FilterSystemd.formatJournalEntry(flt, entry)
                if tm > end:
                    reached = True
                    break
                sent[0] += 1
                for (_, fid, when, fail) in shadow.processLine(line, tm):
                    if send:
                        sent[1] += self._ticket(flt, fid, when, fail)
                send = send or entry.get("__CURSOR") == pos
        finally:
            reader.close()
        self._hand_context(flt, shadow)
        if not (send or reached):
            self.log.error("f2b-mailguard: %s: the checkpoint's journal entry is gone "
                           "(vacuumed?): the journal is not reconciled", self.jail.name)
        return sent

    def _ticket(self, flt, fid, when, fail):
        # As the jail's own processing: never a time in the future, one attempt.
        when = min(when, time.time())
        tick = FailTicket(fid, when, data=fail)
        if flt._inIgnoreIPList(fid, tick):
            return 0
        tick.setRetry(1)
        tick = BanTicket.wrap(tick)
        if self.action.login:
            # Through the jail's ban list (the jails ban at the first attempt): a pair
            # reported within its bantime is "already banned", one missed is reported
            # now, and the jail then treats the pair's next lines as it would have.
            if not self.jail.actions.banManager.addBanTicket(tick):
                return 0
            tick.banned = True
        # A message or bounce id is unique: resent exactly as the live path sends it,
        # and the store keeps it once.
        self.action.ban(Actions.ActionInfo(tick, self.jail))
        return 1


Action = MailguardAction
