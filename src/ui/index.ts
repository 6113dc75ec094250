// The flow map (docs/ui.md): what the daemon calls. `checkUiListen` when it validates its
// options, `readUiToken` with its other key files (before the kernel is touched), then
// `startFlowMap`: the handler built from the daemon's flow log, policy and PU list, listening.

import type { FlowEntry, ListenAddress } from '../api/index.js';
import type { LocalView } from './graph.js';
import { addrText, checkUiListen, startUiServer, type UiServer } from './listen.js';
import { createUiHandler, type ExplainRequest } from './server.js';

export { checkUiListen, readUiToken, type UiServer } from './listen.js';
export type { ExplainRequest } from './server.js';

export interface FlowMapOptions {
  /** `--ui ADDR:PORT`. */
  listen: ListenAddress;
  /** The content of `--ui-token-file` (readUiToken); required beyond loopback (checkUiListen). */
  token?: string;
  /** Every record the flow log keeps, oldest first. */
  recentFlows(): FlowEntry[];
  subscribeFlows(fn: (f: FlowEntry) => void): () => void;
  explain?(q: ExplainRequest): unknown;
  local(): LocalView;
}

export async function startFlowMap(o: FlowMapOptions): Promise<UiServer & { url: string }> {
  const listen = checkUiListen(o.listen, o.token);
  const token = o.token;
  const handler = createUiHandler({
    recentFlows: () => o.recentFlows(),
    subscribeFlows: o.subscribeFlows,
    ...(o.explain ? { explain: o.explain } : {}),
    local: o.local,
    ...(token ? { token } : {}),
  });
  const server = await startUiServer(listen, handler, token ? { token } : {});
  return { ...server, url: `http://${addrText({ host: listen.host, port: server.port })}/` };
}
