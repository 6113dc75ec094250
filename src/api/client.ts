// Typed client of the local API, used by the CLI.

import type { EdgeTableJson } from '../learn/edges.js';
import { request } from 'node:http';
import { ErrorCodes, TesseraError, type ErrorCode } from '../errors.js';
import type { CreatePuRequest, ErrorBody, FlowEntry, PuInfo, RevokedFlowInfo, StatusResponse } from './schemas.js';

export interface ApiClient {
  status(): Promise<StatusResponse>;
  createPu(req: CreatePuRequest): Promise<PuInfo>;
  deletePu(id: string): Promise<void>;
  listPus(): Promise<PuInfo[]>;
  flows(opts: { deniedOnly?: boolean; limit?: number }): Promise<FlowEntry[]>;
  followFlows(opts: { deniedOnly?: boolean }, onFlow: (f: FlowEntry) => void): { stop(): void; done: Promise<void> };
  metrics(): Promise<string>;
  policy(): Promise<{ name: string; text: string }>;
  revoke(dryRun: boolean): Promise<RevokedFlowInfo[]>;
  learnEdges(): Promise<EdgeTableJson>;
}

export function createApiClient(socketPath: string): ApiClient {
  function unreachable(err: unknown): TesseraError {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no socket there' : code === 'ECONNREFUSED' ? 'nothing listens on it' : code === 'EACCES' ? 'permission denied (run as root)' : String(err);
    return new TesseraError(
      'TESSERA_ERR_DAEMON_UNREACHABLE',
      `cannot reach the tessera daemon at ${socketPath}: ${why}. Is \`tessera daemon\` running? Point the CLI at it with --socket or TESSERA_SOCKET.`,
      { cause: err },
    );
  }

  function call<T>(method: string, path: string, body?: unknown, raw = false): Promise<T> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        { socketPath, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}, timeout: 15_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (raw && (res.statusCode ?? 500) < 400) return resolve(text as T);
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              return reject(new TesseraError('TESSERA_ERR_API', `daemon answered ${res.statusCode} with non-JSON body`));
            }
            if ((res.statusCode ?? 500) >= 400) {
              const e = (json as ErrorBody).error;
              // The daemon's own code when it is one of ours (e.g. TESSERA_ERR_RULES), so the CLI names it.
              const code = e?.code && e.code in ErrorCodes ? (e.code as ErrorCode) : 'TESSERA_ERR_API';
              return reject(new TesseraError(code, e?.message ?? `HTTP ${res.statusCode}`));
            }
            resolve(json as T);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => reject(unreachable(err)));
      req.end(payload);
    });
  }

  return {
    status: () => call('GET', '/v1/status'),
    createPu: (r) => call('POST', '/v1/pus', r),
    deletePu: async (id) => {
      await call('DELETE', `/v1/pus/${encodeURIComponent(id)}`);
    },
    listPus: () => call('GET', '/v1/pus'),
    flows: ({ deniedOnly, limit }) => call('GET', `/v1/flows?denied=${deniedOnly ? 1 : 0}&limit=${limit ?? 100}`),
    metrics: () => call('GET', '/metrics', undefined, true),
    policy: () => call('GET', '/v1/policy'),
    revoke: (dryRun) => call('POST', `/v1/flows/revoke?dry=${dryRun ? 1 : 0}`),
    learnEdges: () => call('GET', '/v1/learn/edges'),
    followFlows: ({ deniedOnly }, onFlow) => {
      let stop = (): void => {};
      const done = new Promise<void>((resolve, reject) => {
        const req = request({ socketPath, method: 'GET', path: `/v1/flows?follow=1&denied=${deniedOnly ? 1 : 0}&limit=20` }, (res) => {
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            buf += c;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (line) onFlow(JSON.parse(line) as FlowEntry);
            }
          });
          res.on('end', () => resolve());
        });
        req.on('error', (err) => reject(unreachable(err)));
        req.end();
        stop = () => {
          req.destroy();
          resolve();
        };
      });
      return { stop: () => stop(), done };
    },
  };
}
