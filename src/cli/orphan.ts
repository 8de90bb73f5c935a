/** Our parent at start-up (pid 1 if it was already gone: the orphans' reaper). */
const startParent = process.ppid;

/**
 * `npx mdevfs mount DIR &` starts npm, which runs the daemon through `sh -c`. `kill $!` then
 * signals npm, which forwards SIGTERM to that shell only: the shell dies without passing it on,
 * and the daemon would live on with its mount. So a daemon started by npm exec treats losing
 * its parent as the signal it did not get, including a parent lost before this module loaded
 * (then init, pid 1, already had us at start-up).
 */
export function onOrphaned(stop: () => void): void {
  if (process.env.npm_command !== 'exec') return;
  const timer = setInterval(() => {
    if (process.ppid === startParent && startParent !== 1) return;
    clearInterval(timer);
    stop();
  }, 100);
  timer.unref();
}
