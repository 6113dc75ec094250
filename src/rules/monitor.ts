// A cheap signal that the kernel's rules may have changed, so that an idle daemon does not
// re-read them on a clock (issue 17): one long-lived `nft monitor` child (this netns's
// nf_tables events; iptables here is iptables-nft, so its rules are nf_tables rules too). Any
// line it prints (every transaction ends with "# new generation N") bumps a counter; the
// reconciler re-reads iptables-save and our nft chains only when the counter moved since its
// last read (or on its slow backstop, reconciler.ts).
//
// The counter is known only once the monitor has shown that it listens: after it starts, an
// empty probe transaction (add and delete table inet tessera_probe, nothing else, no hook) is
// sent until the monitor prints it. Until then, and whenever the monitor is gone, generation()
// is undefined and the reconciler reads on its clock, as before. The child is started under
// `setpriv --pdeathsig KILL` where setpriv exists, so it dies with the daemon even on SIGKILL.

import { accessSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import type { CommandRunner, LineStream } from './runner.js';

export interface RulesetWatch {
  /** Changes whenever the ruleset may have changed; undefined while that is unknown. */
  generation(): number | undefined;
  stop(): void;
}

export interface RulesetWatchOptions {
  runner: CommandRunner;
  log?: { warn(obj: object, msg?: string): void; debug(obj: object, msg?: string): void };
  /** Wrap the monitor in `setpriv --pdeathsig KILL` (default: when /usr/bin/setpriv exists). */
  setpriv?: boolean;
  /** Time between probe transactions until the monitor shows it listens (ms, default 300). */
  probeEveryMs?: number;
  /** First delay before restarting a monitor that exited (ms, default 1 000; doubled up to 60 s). */
  restartMs?: number;
}

const PROBE_TABLE = 'tessera_probe';
export const PROBE_INPUT = `add table inet ${PROBE_TABLE}\ndelete table inet ${PROBE_TABLE}\n`;

/** Starts the watch; a runner without stream() (unit fakes) gives one whose generation is always unknown. */
export function watchRuleset(o: RulesetWatchOptions): RulesetWatch {
  const stream = o.runner.stream?.bind(o.runner);
  if (!stream) return { generation: () => undefined, stop() {} };
  const probeEveryMs = o.probeEveryMs ?? 300;
  const restartMs = o.restartMs ?? 1000;
  const argv = [...((o.setpriv ?? defaultSetpriv()) ? ['setpriv', '--pdeathsig', 'KILL'] : []), 'nft', 'monitor'];
  let gen = 0;
  let listening = false;
  let stopped = false;
  let child: LineStream | null = null;
  let probe: NodeJS.Timeout | null = null;
  let restart: NodeJS.Timeout | null = null;
  let failures = 0;

  const clearProbe = (): void => {
    if (probe) clearInterval(probe);
    probe = null;
  };

  function start(): void {
    restart = null;
    if (stopped) return;
    listening = false;
    child = stream!(argv, {
      line(text) {
        gen++;
        if (!listening && text.includes(PROBE_TABLE)) {
          listening = true;
          failures = 0;
          clearProbe();
          o.log?.debug({}, 'nft monitor listening: rules are re-read when they change');
        }
      },
      exit(why) {
        child = null;
        listening = false;
        clearProbe();
        if (stopped) return;
        const delay = Math.min(60_000, restartMs * 2 ** Math.min(failures++, 6));
        o.log?.warn({ why, retryInMs: delay }, 'nft monitor ended: rules are re-read on the reconcile clock until it runs again');
        restart = setTimeout(start, delay);
        restart.unref?.();
      },
    });
    let probes = 0;
    const send = (): void => {
      // Bounded: a monitor that never shows the probe leaves the reconciler on its clock.
      if (listening || stopped || ++probes > 30) return clearProbe();
      o.runner.run(['nft', '-f', '-'], { input: PROBE_INPUT, timeoutMs: 10_000 }).catch((err: unknown) => o.log?.debug({ err: errorMessage(err) }, 'nft probe failed'));
    };
    probe = setInterval(send, probeEveryMs);
    probe.unref?.();
    send();
  }

  start();
  return {
    generation: () => (listening ? gen : undefined),
    stop() {
      stopped = true;
      clearProbe();
      if (restart) clearTimeout(restart);
      child?.stop();
      child = null;
      listening = false;
    },
  };
}

let setprivFound: boolean | undefined;
export function defaultSetpriv(): boolean {
  if (setprivFound === undefined) {
    // Resolved once; the runner reports a missing binary as an exit, which restarts without it.
    setprivFound = ['/usr/bin/setpriv', '/bin/setpriv'].some((p) => {
      try {
        accessSync(p);
        return true;
      } catch {
        return false;
      }
    });
  }
  return setprivFound;
}
