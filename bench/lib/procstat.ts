// Handler CPU time from /proc: utime + stime of a process and all its descendants.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let ticksPerSecond: number | undefined;

/** Clock ticks per second of /proc/PID/stat times (getconf CLK_TCK; 100 on Linux). */
export function clkTck(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  ticks: number;
}

// Fields after the command name, which may itself hold spaces and parentheses.
function readStat(pid: number): Stat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null; // gone
  }
}

/**
 * CPU of the given processes and their descendants, in microseconds. Threads (worker_threads)
 * are included by /proc/PID/stat itself; children (e.g. a daemon's helpers) by walking ppid.
 */
export function cpuMicros(pids: readonly number[]): number {
  if (pids.length === 0) return 0;
  const all = new Map<number, Stat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st) all.set(Number(name), st);
  }
  const want = new Set(pids);
  // Descendants: repeat until no new child appears (process trees here are shallow).
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, st] of all) {
      if (!want.has(pid) && want.has(st.ppid)) {
        want.add(pid);
        grew = true;
      }
    }
  }
  let ticks = 0;
  for (const pid of want) ticks += all.get(pid)?.ticks ?? 0;
  return (ticks * 1e6) / clkTck();
}

/**
 * CPU of the main threads only (/proc/PID/task/PID/stat), in microseconds: for a Node handler
 * this is its control plane (timers, child processes, messages), the rest of its CPU being its
 * worker threads (the datapath) and V8's helper threads (GC).
 */
export function mainThreadMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* gone */
    }
  }
  return (ticks * 1e6) / clkTck();
}
