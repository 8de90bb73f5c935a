"""mdevfs from Python: start an emulated mdev sysfs tree, steer it over its control API.

Only the standard library: the control API (docs/control-api.md) is HTTP/1.1 on the daemon's unix
socket, spoken here with http.client over an AF_UNIX connection. The daemon is the `mdevfs`
command: the one MDEVFS_CLI names, else the first on PATH.

    tree = mdevfs.start(profile="samples")
    try:
        with tree.fault(op="create", type="mtty-2", errno="ENOSPC", times=1):
            ...  # the next create of mtty-2 fails with ENOSPC
        tree.journal(since=mark)
    finally:
        tree.stop()
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

__all__ = [
    "ApiError",
    "Control",
    "Mark",
    "MdevfsError",
    "Tree",
    "attach",
    "find_cli",
    "run",
    "start",
]

#: Keys of a fault rule's match, its trigger, and the flat spellings of its action (see fault()).
MATCH_KEYS = ("op", "parent", "type", "uuid", "attr", "path")
TRIGGER_KEYS = ("after", "every", "probability", "seed", "times", "sticky")


class MdevfsError(Exception):
    """mdevfs could not be found or started (the message says why)."""


class ApiError(MdevfsError):
    """A control API request answered with an HTTP error: .status, .body (the daemon's JSON)."""

    def __init__(self, method, path, status, body):
        self.status = status
        self.body = body
        self.errno = body.get("errno") if isinstance(body, dict) else None
        msg = body.get("error") if isinstance(body, dict) else None
        super().__init__("%s %s: HTTP %d: %s" % (method, path, status, msg or body))


class Mark(int):
    """What mark() returns: the journal's sequence number, with .seqnum, the uevents' SEQNUM then.

    .journal is that sequence number, or None when the daemon keeps no journal (--journal-size 0);
    the int is then 0, and journal calls answer why (HTTP 409)."""

    def __new__(cls, journal, seqnum):
        m = int.__new__(cls, 0 if journal is None else journal)
        m.journal = journal
        m.seqnum = seqnum
        return m


class _UnixConnection(http.client.HTTPConnection):
    """http.client over a unix socket (the Host header is any name: the socket decides)."""

    def __init__(self, path, timeout=None):
        super().__init__("mdevfs", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Control:
    """The control API of one daemon, by its socket (one connection per request)."""

    def __init__(self, socket_path):
        self.socket = socket_path

    def request(self, method, path, body=None, timeout=30.0):
        """Sends one request; returns (status, JSON body). Raises OSError if no daemon answers."""
        conn = _UnixConnection(self.socket, timeout=timeout)
        try:
            headers = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            text = res.read().decode("utf-8", "replace")
            try:
                parsed = json.loads(text) if text.strip() else {}
            except ValueError:
                parsed = {"error": text.strip()}
            return res.status, parsed
        finally:
            conn.close()

    def call(self, method, path, body=None, timeout=30.0):
        """request(), raising ApiError unless the status is 2xx; returns the JSON body."""
        status, parsed = self.request(method, path, body, timeout)
        if not 200 <= status < 300:
            raise ApiError(method, path, status, parsed)
        return parsed

    def ping(self, timeout=5.0):
        return self.call("GET", "/v1/ping", timeout=timeout)

    def state(self):
        return self.call("GET", "/v1/state")

    def add_fault(self, rule):
        """Adds a fault rule ({match, action, trigger}); returns the rule as the daemon has it (with its id)."""
        return self.call("POST", "/v1/faults", rule)

    def faults(self):
        """The rules, each with how often it matched and fired."""
        return self.call("GET", "/v1/faults")["rules"]

    def remove_fault(self, rule_id):
        return self.call("DELETE", "/v1/faults/" + urllib.parse.quote(str(rule_id), safe=""))

    def release_fault(self, rule_id):
        return self.call("POST", "/v1/faults/%s/release" % urllib.parse.quote(str(rule_id), safe=""))

    def journal(self, since=None):
        """The journal's entries after sequence number `since` (all retained ones without it)."""
        path = "/v1/journal" + ("" if since is None else "?since=%d" % int(since))
        body = self.call("GET", path)
        return body.get("entries", []) if isinstance(body, dict) else body

    def mark(self):
        """A mark in the journal: a Mark (an int, the journal's sequence number, for
        journal(since=...) and wait(journal=..., since=...); .seqnum, the uevents', for wait(event=...))."""
        body = self.call("POST", "/v1/mark", {})
        return Mark(body["journal"], body["seqnum"])

    def wait(self, timeout=10.0, **condition):
        """Waits for a condition: event="add:UUID", device=UUID and state="active", or
        journal={"op": "create", "errno": "ENOSPC", ...}; since= a mark() (or a number).

        Returns the daemon's answer; raises TimeoutError when it is not met within `timeout` seconds.
        """
        since = condition.get("since")
        if isinstance(since, Mark):
            condition["since"] = int(since) if "journal" in condition else since.seqnum
        body = dict(condition, timeout=timeout)
        status, parsed = self.request("POST", "/v1/wait", body, timeout=timeout + 10)
        if status == 408:
            raise TimeoutError("mdevfs wait %r: %s" % (condition, parsed.get("error", "not met")))
        if not 200 <= status < 300:
            raise ApiError("POST", "/v1/wait", status, parsed)
        return parsed

    def reset(self):
        """Back to the profile's start state: devices, parents, faults, counters."""
        return self.call("POST", "/v1/reset", {})


def fault_rule(rule=None, **kw):
    """A fault rule from flat keywords: match (op, parent, type, uuid, attr, path), one action
    (errno="ENOSPC", delay_ms=500 [jitter_ms], hang=True, succeed=True, content="..."), trigger
    (after, every, probability, seed, times, sticky) and id. `rule` is a whole rule instead."""
    if rule is not None:
        if kw:
            raise TypeError("fault(): a whole rule or keywords, not both")
        return rule
    match = {k: kw.pop(k) for k in MATCH_KEYS if k in kw}
    trigger = {k: kw.pop(k) for k in TRIGGER_KEYS if k in kw}
    actions = []
    if "errno" in kw:
        actions.append({"kind": "errno", "errno": kw.pop("errno")})
    if "delay_ms" in kw:
        a = {"kind": "delay", "ms": kw.pop("delay_ms")}
        if "jitter_ms" in kw:
            a["jitterMs"] = kw.pop("jitter_ms")
        actions.append(a)
    if kw.pop("hang", False):
        actions.append({"kind": "hang"})
    if kw.pop("succeed", False):
        actions.append({"kind": "succeed"})
    if "content" in kw:
        actions.append({"kind": "content", "content": kw.pop("content")})
    rule_id = kw.pop("id", None)
    if kw:
        raise TypeError("fault(): unknown keyword(s) %s" % ", ".join(sorted(kw)))
    if "op" not in match:
        raise TypeError("fault(): op= is required (create, remove, store, bind, unbind, sriov_numvfs, current_vgpu_type, read)")
    if len(actions) != 1:
        raise TypeError("fault(): exactly one action: errno=, delay_ms=, hang=True, succeed=True or content=")
    out = {"match": match, "action": actions[0]}
    if trigger:
        out["trigger"] = trigger
    if rule_id is not None:
        out["id"] = rule_id
    return out


class Fault:
    """A fault rule for the length of a `with` block: added on entry, removed on exit."""

    def __init__(self, control, rule):
        self._control = control
        self.rule = rule
        self.id = None

    def __enter__(self):
        added = self._control.add_fault(self.rule)
        rule = added.get("rule", added) if isinstance(added, dict) else added
        self.id = rule.get("id")
        self.rule = rule
        return self

    def release(self):
        """Lets the requests a `hang` rule holds go on."""
        return self._control.release_fault(self.id)

    def __exit__(self, *exc):
        try:
            self._control.remove_fault(self.id)
        except ApiError as err:
            if err.status != 404:  # a reset in the block already dropped it
                raise
        return False


class Tree:
    """A running emulated tree: .root (its directory), .control, and the control verbs."""

    def __init__(self, root, control, process=None, workdir=None, log=None):
        self.root = root
        self.control = control
        self._process = process
        self._workdir = workdir
        self._log = log

    @property
    def socket(self):
        return self.control.socket

    def fault(self, rule=None, **kw):
        """A context manager: the rule (see fault_rule) holds inside the block and is removed after it."""
        return Fault(self.control, fault_rule(rule, **kw))

    def state(self):
        return self.control.state()

    def mark(self):
        return self.control.mark()

    def journal(self, since=None):
        return self.control.journal(since)

    def wait(self, timeout=10.0, **condition):
        return self.control.wait(timeout=timeout, **condition)

    def reset(self):
        return self.control.reset()

    def run(self, argv, **kwargs):
        """Runs argv (subprocess.run's keywords) in a private mount namespace where this tree is
        /sys (and a scratch directory /etc/mdevctl.d), for tools that hard-code /sys. As an
        ordinary user, in a user namespace of its own (unshare --user --map-root-user)."""
        scratch = tempfile.mkdtemp(prefix="mdevfs-etc-")
        for sub in ("callouts", "notifiers"):  # mdevctl refuses to run without them
            os.makedirs(os.path.join(scratch, "scripts.d", sub))
        try:
            inner = 'mount --bind "$1" /sys && mkdir -p /etc/mdevctl.d && mount --bind "$2" /etc/mdevctl.d || exit 125; shift 2; exec "$@"'
            ns = ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
            return subprocess.run(ns + ["sh", "-c", inner, "sh", self.root, scratch] + list(argv), **kwargs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def stop(self, timeout=10.0):
        """Stops the daemon (SIGTERM: it unmounts) and removes its directory. A tree attached to is left alone."""
        proc, self._process = self._process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def find_cli():
    """The mdevfs command: MDEVFS_CLI, else `mdevfs` on PATH (a list, for subprocess)."""
    cli = os.environ.get("MDEVFS_CLI")
    if cli:
        if not os.access(cli, os.X_OK):
            raise MdevfsError("MDEVFS_CLI=%s is not an executable file" % cli)
        return [cli]
    found = shutil.which("mdevfs")
    if not found:
        raise MdevfsError(
            "mdevfs is not on PATH and MDEVFS_CLI is not set: install it (in a clone: "
            "`sudo npm install -g .`) or set MDEVFS_CLI to a clone's scripts/mdevfs"
        )
    return [found]


def _why_not_here():
    """Why an ordinary user cannot mount a tree here (None: nothing known stops it)."""
    if os.geteuid() == 0:
        return None
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not open to this user (it must be mode 0666), and this is not root"
    if not (shutil.which("fusermount") or shutil.which("fusermount3")):
        return "not root, and no fusermount on PATH (Debian: fuse3) to mount for an ordinary user"
    return None


def _profile_args(profile, workdir):
    if profile is None:
        return []
    if isinstance(profile, dict):
        path = os.path.join(workdir, "profile.json")
        with open(path, "w") as f:
            json.dump(profile, f)
        return ["--profile", path]
    return ["--profile", os.fspath(profile)]


def start(profile=None, abi=None, backend=None, root=None, timeout=30.0, extra_args=()):
    """Starts a daemon serving a fresh tree (at `root`, else a new temporary directory) with
    `profile`: a built-in name, a file or a dict. Returns the Tree once it answers; stop() it."""
    why = _why_not_here()
    if why:
        raise MdevfsError("cannot start mdevfs: " + why)
    cli = find_cli()
    workdir = tempfile.mkdtemp(prefix="mdevfs-")
    os.chmod(workdir, 0o700)
    root = root or os.path.join(workdir, "root")
    sock = os.path.join(workdir, "control.sock")
    argv = cli + ["mount", root, "--control", sock] + _profile_args(profile, workdir)
    if abi:
        argv += ["--abi", str(abi)]
    if backend:
        argv += ["--backend", backend]
    argv += list(extra_args)
    log = open(os.path.join(workdir, "daemon.log"), "w+")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    tree = Tree(root, Control(sock), proc, workdir, log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().strip()
            tree.stop()
            raise MdevfsError("mdevfs mount exited with status %d: %s" % (proc.returncode, err or "(no message)"))
        try:
            if os.path.exists(sock) and tree.control.ping(timeout=2).get("mounted"):
                return tree
        except (OSError, ApiError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            tree.stop()
            raise MdevfsError("mdevfs mount did not answer within %g s" % timeout)
        time.sleep(0.01)


def attach(root=None, control=None):
    """The tree this process runs over inside `mdevfs exec` (MDEVFS_ROOT, MDEVFS_CONTROL); stop() leaves it alone."""
    control = control or os.environ.get("MDEVFS_CONTROL")
    if not control:
        raise MdevfsError("not inside mdevfs exec: MDEVFS_CONTROL is not set")
    return Tree(root or os.environ.get("MDEVFS_ROOT", "/sys"), Control(control))


def run(argv, profile=None, abi=None, extra_args=(), **kwargs):
    """Runs argv under `mdevfs exec` (a fresh tree over /sys; subprocess.run's keywords).
    Inside, the command gets MDEVFS_ROOT and MDEVFS_CONTROL (see attach())."""
    cmd = find_cli() + ["exec"]
    with contextlib.ExitStack() as stack:
        workdir = tempfile.mkdtemp(prefix="mdevfs-")
        stack.callback(shutil.rmtree, workdir, True)
        cmd += _profile_args(profile, workdir)
        if abi:
            cmd += ["--abi", str(abi)]
        cmd += list(extra_args) + ["--"] + list(argv)
        return subprocess.run(cmd, **kwargs)
