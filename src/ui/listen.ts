// The flow map's listener: `--ui ADDR:PORT` parsed and checked (a non-loopback address needs
// a token file), the token read, and an HTTP server around the handler of server.ts.

import { createServer, type Server } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { TesseraError } from '../errors.js';
import { isLoopback, type ListenAddress } from '../api/index.js';
import type { UiHandler } from './server.js';

export interface UiListen extends ListenAddress {
  loopback: boolean;
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
export function checkUiListen(listen: ListenAddress, tokenFile: string | undefined): UiListen {
  const loopback = isLoopback(listen.host);
  if (!loopback && !tokenFile) {
    throw new TesseraError('TESSERA_ERR_INVALID_CONFIG', `--ui ${addrText(listen)} listens beyond this host and needs --ui-token-file FILE (a secret of at least 16 characters, mode 600); or use a loopback address such as 127.0.0.1:${listen.port}`);
  }
  return { ...listen, loopback };
}

export function addrText(l: ListenAddress): string {
  return `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
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
      reject(new TesseraError('TESSERA_ERR_INVALID_CONFIG', `--ui ${addrText(listen)}: cannot listen (${err.code ?? err.message})`)),
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
