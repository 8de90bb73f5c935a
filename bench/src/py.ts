import { spawn } from 'node:child_process';

/**
 * The measuring clients. They run as separate, long-lived python3 processes (never in the
 * daemon's process, and never one process per operation), so what is timed is the syscalls,
 * not process start-up. Each subcommand reads its arguments as JSON on stdin and prints one
 * JSON object on stdout.
 */
const PY = String.raw`
import json, os, sys, time, random

def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

def write_file(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)

def stats(lat_ns, total_ns, n):
    lat_ns.sort()
    return {"n": n, "meanUs": total_ns / n / 1000.0, "p50Us": lat_ns[n // 2] / 1000.0,
            "p99Us": lat_ns[min(n - 1, int(n * 0.99))] / 1000.0}

# Repeats one syscall sequence on one path: up to n times or for at most 'seconds'.
def cmd_loop(a):
    op, path = a["op"], a["path"]
    if op == "read":
        # As python's open().read() and cat: open, fstat, read, close.
        def f():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fstat(fd)
                os.read(fd, 4096)
            finally:
                os.close(fd)
    elif op == "stat":
        f = lambda: os.stat(path)
    elif op == "lstat":
        f = lambda: os.lstat(path)
    elif op == "readlink":
        f = lambda: os.readlink(path)
    elif op == "listdir":
        f = lambda: os.listdir(path)
    else:
        raise SystemExit("unknown op " + op)
    for _ in range(a.get("warmup", 20)):
        f()
    pc = time.perf_counter_ns
    limit = pc() + int(a.get("seconds", 1e9) * 1e9)
    lat = []
    t0 = pc()
    n = 0
    while n < a["n"]:
        s = pc()
        f()
        e = pc()
        lat.append(e - s)
        n += 1
        if e > limit:
            break
    out(stats(lat, pc() - t0, n))

# Writes each payload to 'path' in turn (one open/write/close each): creates at a known size.
def cmd_writes(a):
    path = a["path"]
    pc = time.perf_counter_ns
    lat, errors = [], {}
    t0 = pc()
    for data in a["payloads"]:
        s = pc()
        try:
            write_file(path, data.encode())
        except OSError as e:
            errors[e.strerror] = errors.get(e.strerror, 0) + 1
        lat.append(pc() - s)
    total = pc() - t0
    r = stats(lat, total, len(lat))
    r.update({"seconds": total / 1e9, "errors": errors})
    out(r)

def run_forked(jobs, start_delay=0.3, probe=None):
    """Runs each job(deadline) in its own process; all start at one monotonic deadline.
    probe(deadline, pids), if given, runs in the parent while the jobs run."""
    deadline = time.monotonic() + start_delay
    kids = []
    for job in jobs:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                res = job(deadline)
            except BaseException as e:
                res = {"fatal": repr(e)}
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        kids.append((pid, r))
    probed = probe(deadline, [pid for pid, _ in kids]) if probe else None
    results = []
    for pid, r in kids:
        chunks = []
        while True:
            c = os.read(r, 65536)
            if not c:
                break
            chunks.append(c)
        os.close(r)
        os.waitpid(pid, 0)
        results.append(json.loads(b"".join(chunks)))
    return (results, probed) if probe else results

def wait_until(deadline):
    while True:
        d = deadline - time.monotonic()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))

def kernel_stack(pid):
    """Scheduler state and kernel stack (innermost first; __sched frames are not shown)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/stack" % pid) as f:
            frames = [l.split("] ", 1)[-1].split("/")[0] for l in f.read().splitlines()]
        return {"state": state, "frames": frames}
    except OSError:
        return None

# Concurrent writes: one process per [path, data], all released at the same instant.
# With stackAtMs, the kernel stack of every writer is sampled that long after the start.
def cmd_burst(a):
    def job(path, data):
        def run(deadline):
            wait_until(deadline)
            t0 = time.monotonic()
            err = None
            try:
                write_file(path, data.encode())
            except OSError as e:
                err = e.strerror
            return {"t0": t0, "t1": time.monotonic(), "err": err}
        return run
    def probe(deadline, pids):
        wait_until(deadline + a["stackAtMs"] / 1000.0)
        return [kernel_stack(p) for p in pids]
    res = run_forked([job(p, d) for p, d in a["writes"]], probe=probe if a.get("stackAtMs") else None)
    stacks = None
    if a.get("stackAtMs"):
        res, stacks = res
    t0 = min(r["t0"] for r in res)
    out({"totalMs": (max(r["t1"] for r in res) - t0) * 1000.0, "stacks": stacks,
         "each": [{"startMs": (r["t0"] - t0) * 1000.0, "endMs": (r["t1"] - t0) * 1000.0, "err": r["err"]} for r in res]})

# Full create/remove cycles, one worker process per create path, for a fixed time.
def cmd_cycles(a):
    import uuid
    seconds, devdir = a["seconds"], a["devicesDir"]
    # On the floor (a static tree) every cycle writes the remove file of one existing device.
    fixed_remove = a.get("removePath")
    def job(path):
        def run(deadline):
            wait_until(deadline)
            end = deadline + seconds
            n, errors = 0, {}
            while time.monotonic() < end:
                u = str(uuid.uuid4())
                try:
                    write_file(path, u.encode())
                    write_file(fixed_remove or os.path.join(devdir, u, "remove"), b"1")
                    n += 1
                except OSError as e:
                    errors[e.strerror] = errors.get(e.strerror, 0) + 1
            return {"n": n, "seconds": time.monotonic() - deadline, "errors": errors}
        return run
    res = run_forked([job(p) for p in a["createPaths"]])
    n = sum(r["n"] for r in res)
    secs = max(r["seconds"] for r in res)
    errors = {}
    for r in res:
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    out({"cycles": n, "seconds": secs, "perSecond": n / secs, "perWorker": [r["n"] for r in res], "errors": errors})

# What mdevctl list does per device: parent = basename(dirname(realpath(link))),
# type = basename(realpath(dev/mdev_type)). Devices are walked in a shuffled order until
# all are done or the time budget is spent, so a partial walk is an even sample.
def cmd_walk(a):
    root = a["root"]
    devdir = os.path.join(root, "bus/mdev/devices")
    pc = time.perf_counter
    t0 = pc()
    names = os.listdir(devdir)
    t1 = pc()
    order = sorted(names)
    random.Random(a.get("seed", 1)).shuffle(order)
    limit = t1 + a.get("budgetS", 1e9)
    res = {}
    for n in order:
        p = os.path.realpath(os.path.join(devdir, n))
        parent = os.path.basename(os.path.dirname(p))
        typ = os.path.basename(os.path.realpath(os.path.join(p, "mdev_type")))
        res[n] = [parent, typ]
        if pc() > limit:
            break
    t2 = pc()
    done = len(res)
    out({"devices": len(names), "walked": done, "listMs": (t1 - t0) * 1000.0,
         "walkMs": (t2 - t1) * 1000.0, "perDeviceMs": (t2 - t1) * 1000.0 / max(done, 1),
         "fullWalkMs": (t1 - t0) * 1000.0 + (t2 - t1) * 1000.0 / max(done, 1) * len(names),
         "result": res if a.get("withResult") else None})

# Mirrors a tree (no symlink is followed) into real directories, files and symlinks:
# readable attributes get their content, the rest (write-only, or a read error) stay empty.
def cmd_copy(a):
    src, dst = a["src"], a["dst"]
    counts = {"dirs": 0, "files": 0, "links": 0, "unreadable": 0}
    t0 = time.perf_counter()
    def walk(rel):
        s = os.path.join(src, rel) if rel else src
        d = os.path.join(dst, rel) if rel else dst
        for name in sorted(os.listdir(s)):
            sp, dp = os.path.join(s, name), os.path.join(d, name)
            st = os.lstat(sp)
            mode = st.st_mode
            if (mode & 0o170000) == 0o040000:
                os.mkdir(dp)
                os.chmod(dp, mode & 0o7777)
                counts["dirs"] += 1
                walk(os.path.join(rel, name) if rel else name)
            elif (mode & 0o170000) == 0o120000:
                os.symlink(os.readlink(sp), dp)
                counts["links"] += 1
            else:
                data = b""
                if mode & 0o444:
                    try:
                        fd = os.open(sp, os.O_RDONLY)
                        try:
                            data = os.read(fd, 65536)
                        finally:
                            os.close(fd)
                    except OSError:
                        counts["unreadable"] += 1
                with open(dp, "wb") as f:
                    f.write(data)
                os.chmod(dp, mode & 0o7777)
                counts["files"] += 1
    os.makedirs(dst, exist_ok=True)
    walk("")
    counts["seconds"] = time.perf_counter() - t0
    out(counts)

# Machine calibration: round trip of one byte between two processes over pipes (two wakeups).
def cmd_pingpong(a):
    n = a["n"]
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            os.read(r1, 1)
            os.write(w2, b"x")
        os._exit(0)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(w1, b"x")
        os.read(r2, 1)
    us = (time.perf_counter() - t0) / n * 1e6
    os.waitpid(pid, 0)
    out({"roundTripUs": us})

cmd = sys.argv[1]
args = json.loads(sys.stdin.read() or "{}")
{"loop": cmd_loop, "writes": cmd_writes, "burst": cmd_burst, "cycles": cmd_cycles,
 "walk": cmd_walk, "copy": cmd_copy, "pingpong": cmd_pingpong}[cmd](args)
`;

/** Runs one python3 subcommand with JSON arguments on stdin; resolves with its JSON output. */
export function py<T>(cmd: string, args: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', PY, cmd], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`python3 ${cmd} exited ${code}: ${stderr.trim().slice(-2000)}`));
      try {
        resolve(JSON.parse(stdout) as T);
      } catch {
        reject(new Error(`python3 ${cmd}: unparsable output: ${stdout.slice(0, 500)} ${stderr.slice(-500)}`));
      }
    });
    child.stdin.end(JSON.stringify(args));
  });
}

export interface LoopResult {
  n: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}

export interface WritesResult extends LoopResult {
  seconds: number;
  errors: Record<string, number>;
}

export interface BurstResult {
  totalMs: number;
  /** Scheduler state and kernel stack (function+offset, innermost first) of each writer, if sampled. */
  stacks: ({ state: string; frames: string[] } | null)[] | null;
  each: { startMs: number; endMs: number; err: string | null }[];
}

export interface CyclesResult {
  cycles: number;
  seconds: number;
  perSecond: number;
  perWorker: number[];
  errors: Record<string, number>;
}

export interface WalkResult {
  devices: number;
  walked: number;
  listMs: number;
  walkMs: number;
  perDeviceMs: number;
  fullWalkMs: number;
  result: Record<string, [string, string]> | null;
}

export interface CopyResult {
  dirs: number;
  files: number;
  links: number;
  unreadable: number;
  seconds: number;
}

export const loop = (op: 'read' | 'stat' | 'lstat' | 'readlink' | 'listdir', path: string, n: number, seconds = 3, warmup = 20) =>
  py<LoopResult>('loop', { op, path, n, seconds, warmup });
export const writes = (path: string, payloads: string[]) => py<WritesResult>('writes', { path, payloads });
export const burst = (w: [string, string][], stackAtMs = 0) => py<BurstResult>('burst', { writes: w, stackAtMs });
export const cycles = (createPaths: string[], devicesDir: string, seconds: number, removePath?: string) =>
  py<CyclesResult>('cycles', { createPaths, devicesDir, seconds, removePath });
export const walk = (root: string, budgetS: number, withResult = true) => py<WalkResult>('walk', { root, budgetS, withResult });
export const copyTree = (src: string, dst: string) => py<CopyResult>('copy', { src, dst });
export const pingPong = (n = 20000) => py<{ roundTripUs: number }>('pingpong', { n });
