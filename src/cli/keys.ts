// `tessera ca ...` and `tessera psk ...`: create trust material. Files holding private keys
// are written with mode 600 and never overwritten.

import { writeFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TesseraError, asTesseraError } from '../errors.js';
import {
  createCa,
  createHostKey,
  createSecret,
  issueHostCertificate,
  parseCaFile,
  serializeCa,
  serializeCaPublic,
  serializeHostIdentity,
  serializeSecret,
} from '../identity/index.js';
import { caInit, caIssue, pskInit } from './commands.js';
import { printHelp, subcommandOf } from './common.js';
import { ensureDir } from './fs.js';
import type { CliIo } from './output.js';
import { parseCommand } from './spec.js';

function writeNew(path: string, text: string, mode: number): void {
  try {
    writeFileSync(path, text, { mode, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${path} already exists: not overwriting key material`);
    throw asTesseraError(err);
  }
}

function readCa(path: string): string {
  try {
    if ((statSync(path).mode & 0o077) !== 0) throw new TesseraError('TESSERA_ERR_KEY_FILE', `${path} is readable by group or others: run chmod 600 ${path}`);
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw asTesseraError(err);
  }
}

function report(io: CliIo, json: boolean, files: { private: string[]; public: string[] }, text: string): void {
  io.out(json ? JSON.stringify(files) : text);
}

const isHelp = (sub: string | undefined): boolean => sub === undefined || sub === '--help' || sub === '-h' || sub === 'help';

export async function caCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (isHelp(sub)) return printHelp('ca', io);
  if (subcommandOf('ca', sub) === 'init') {
    const p = parseCommand(caInit, rest);
    if (p === 'help') return printHelp('ca', io);
    const out = p.values.out;
    ensureDir(out, 0o700);
    const ca = await createCa(p.values.name);
    writeNew(join(out, 'ca.json'), serializeCa(ca), 0o600);
    writeNew(join(out, 'ca.pub.json'), serializeCaPublic(ca), 0o644);
    report(io, p.values.json, { private: [join(out, 'ca.json')], public: [join(out, 'ca.pub.json')] }, `wrote ${join(out, 'ca.json')} (private: keep it offline) and ${join(out, 'ca.pub.json')}`);
    return 0;
  }
  const p = parseCommand(caIssue, rest);
  if (p === 'help') return printHelp('ca', io);
  const { ca: caPath, host, out, days } = p.values;
  const ca = parseCaFile(readCa(caPath));
  ensureDir(out, 0o700);
  const key = await createHostKey();
  const certificate = await issueHostCertificate(ca, { host, hostPublicJwk: key.publicJwk, validityDays: days });
  writeNew(join(out, `${host}.cert`), certificate + '\n', 0o644);
  writeNew(join(out, `${host}.key.json`), serializeHostIdentity({ mode: 'ca', hostId: host, ...key, certificate }), 0o600);
  report(io, p.values.json, { private: [join(out, `${host}.key.json`)], public: [join(out, `${host}.cert`)] }, `wrote ${join(out, host + '.cert')} and ${join(out, host + '.key.json')} (private)`);
  return 0;
}

export async function pskCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (isHelp(sub)) return printHelp('psk', io);
  subcommandOf('psk', sub);
  const p = parseCommand(pskInit, rest);
  if (p === 'help') return printHelp('psk', io);
  writeNew(p.values.out, serializeSecret(createSecret(), 'psk'), 0o600);
  report(io, p.values.json, { private: [p.values.out], public: [] }, `wrote ${p.values.out} (private: copy it to every host, mode 600)`);
  return 0;
}
