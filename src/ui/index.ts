// The flow map (docs/ui.md): what the daemon calls. `startFlowMap` reads the token, builds the
// handler from the daemon's flow log, policy and PU list, and listens.

import type { FlowEntry } from '../api/schemas.js';
import type { LocalView } from './graph.js';
import { checkUiListen, readUiToken, startUiServer, type UiServer } from './listen.js';
import { createUiHandler, type ExplainRequest } from './server.js';

export { checkUiListen, type UiServer } from './listen.js';
export type { ExplainRequest } from './server.js';

export interface FlowMapOptions {
  /** `--ui ADDR:PORT`. */
  listen: string;
  /** `--ui-token-file FILE`; required beyond loopback (checkUiListen). */
  tokenFile?: string;
  /** Every record the flow log keeps, oldest first. */
  recentFlows(): FlowEntry[];
  subscribeFlows(fn: (f: FlowEntry) => void): () => void;
  explain?(q: ExplainRequest): unknown;
  local(): LocalView;
}

export async function startFlowMap(o: FlowMapOptions): Promise<UiServer & { url: string }> {
  const listen = checkUiListen(o.listen, o.tokenFile);
  const token = o.tokenFile ? readUiToken(o.tokenFile) : undefined;
  const handler = createUiHandler({
    recentFlows: () => o.recentFlows(),
    subscribeFlows: o.subscribeFlows,
    ...(o.explain ? { explain: o.explain } : {}),
    local: o.local,
    ...(token ? { token } : {}),
  });
  const server = await startUiServer(listen, handler, token ? { token } : {});
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return { ...server, url: `http://${host}:${server.port}/` };
}
