/**
 * `npx mdevfs mount DIR &` starts npm, which runs the daemon through `sh -c`. `kill $!` then
 * signals npm, which forwards SIGTERM to that shell only: the shell dies without passing it on,
 * and the daemon would live on with its mount. So a daemon started by npm exec treats losing
 * its parent (being reparented) as the signal it did not get.
 */
export function onOrphaned(stop: () => void): void {
  if (process.env.npm_command !== 'exec') return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    stop();
  }, 100);
  timer.unref();
}
