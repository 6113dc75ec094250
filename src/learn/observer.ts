// The edge table of this thread: in a datapath worker, outcome.ts calls observeFlow() for
// every flow record it builds (whether or not the record itself crosses to the main thread),
// and the worker hands drainObserved() to the daemon on a slow timer. One table per worker
// thread, bounded like every EdgeTable (DEFAULT_MAX_EDGES; overflow counted in `dropped`).

import { EdgeTable, type EdgeTableJson, type Observed } from './edges.js';

const table = new EdgeTable();

export function observeFlow(r: Observed): void {
  table.observe(r);
}

/** What was observed since the last drain, emptied; null when nothing was. */
export function drainObserved(): EdgeTableJson | null {
  return table.drain();
}
