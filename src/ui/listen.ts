// The flow map's listener: `--ui ADDR:PORT` parsed and checked (a non-loopback address needs
// a token file), the token read, and an HTTP server around the handler of server.ts.

import { createServer, type Server } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { TesseraError } from '../errors.js';
import type { UiHandler } from './server.js';

export interface UiListen {
  host: string;
  port: number;
  loopback: boolean;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** "ADDR:PORT", "[V6]:PORT" or a bare "PORT" (loopback). */
export function parseUiListen(text: string): UiListen {
  const bad = (why: string): never => {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `--ui ${JSON.stringify(text)}: ${why} (use ADDR:PORT, e.g. 127.0.0.1:9090)`);
  };
  let host = '127.0.0.1';
  let portText = text;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (v6) [, host, portText] = v6 as unknown as [string, string, string];
  else if (text.includes(':')) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  if (!/^\d+$/.test(portText) || +portText < 1 || +portText > 65535) bad('the port must be 1-65535');
  if (host !== 'localhost' && isIP(host) === 0) bad(`${JSON.stringify(host)} is not an IP address`);
  return { host, port: +portText, loopback: isLoopback(host) };
}

/** The token of a non-loopback listener: a file of at least 16 characters, not readable by group or others. */
export function readUiToken(file: string): string {
  let text: string;
  try {
    if ((statSync(file).mode & 0o077) !== 0) throw new TesseraError('TESSERA_ERR_KEY_FILE', `--ui-token-file ${file} is readable by group or others; chmod 600 it`);
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if (err instanceof TesseraError) throw err;
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `--ui-token-file ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (text.length < 16 || /\s/.test(text)) throw new TesseraError('TESSERA_ERR_KEY_FILE', `--ui-token-file ${file}: the token must be one word of at least 16 characters`);
  return text;
}

/** Checks `--ui` and `--ui-token-file` together before anything starts (no I/O): a listener beyond this host needs a token. */
export function checkUiListen(listen: string, tokenFile: string | undefined): UiListen {
  const l = parseUiListen(listen);
  if (!l.loopback && !tokenFile) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `--ui ${listen} listens beyond this host and needs --ui-token-file FILE (a secret of at least 16 characters, mode 600); or use a loopback address such as 127.0.0.1:${l.port}`);
  }
  return l;
}

export interface UiServer {
  /** The bound port (useful with port 0 in tests). */
  port: number;
  close(): Promise<void>;
}

/**
 * Serves the handler. On a loopback listener without a token, the Host header must name a
 * loopback host too, so that a web page elsewhere cannot reach it by DNS rebinding.
 */
export async function startUiServer(listen: UiListen, handler: UiHandler, opts: { token?: string } = {}): Promise<UiServer> {
  const guardHost = listen.loopback && !opts.token;
  const server: Server = createServer((req, res) => {
    if (guardHost) {
      const h = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      if (!isLoopback(h)) {
        res.writeHead(421, { 'content-type': 'text/plain' });
        res.end('this flow map answers only to a loopback host name\n');
        return;
      }
    }
    handler.handle(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new TesseraError('TESSERA_ERR_INVALID_CONFIG', `--ui ${listen.host}:${listen.port}: cannot listen (${err.code ?? err.message})`)),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : listen.port,
    close: () =>
      new Promise<void>((resolve) => {
        handler.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
