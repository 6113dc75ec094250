// `tessera ca ...` and `tessera psk ...`: create trust material. Files holding private keys
// are written with mode 600 and never overwritten.

import { mkdirSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TesseraError } from '../errors.js';
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
import { HELP } from './help.js';
import { parse, type CliIo } from './main.js';

function writeNew(path: string, text: string, mode: number): void {
  try {
    writeFileSync(path, text, { mode, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${path} already exists: not overwriting key material`);
    throw new TesseraError('TESSERA_ERR_KEY_FILE', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function required(v: unknown, flag: string, command: string): string {
  if (typeof v !== 'string' || v === '') throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `${flag} is required\nSee: tessera ${command} --help`);
  return v;
}

export async function caCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'init') {
    const { values } = parse('ca', rest, { out: { type: 'string' }, name: { type: 'string' } });
    if (values.help) return io.out(HELP.ca!), 0;
    const out = required(values.out, '--out', 'ca');
    const ca = await createCa((values.name as string | undefined) ?? 'tessera-ca');
    mkdirSync(out, { recursive: true, mode: 0o700 });
    writeNew(join(out, 'ca.json'), serializeCa(ca), 0o600);
    writeNew(join(out, 'ca.pub.json'), serializeCaPublic(ca), 0o644);
    io.out(`wrote ${join(out, 'ca.json')} (private: keep it offline) and ${join(out, 'ca.pub.json')}`);
    return 0;
  }
  if (sub === 'issue') {
    const { values } = parse('ca', rest, { ca: { type: 'string' }, host: { type: 'string' }, out: { type: 'string' }, days: { type: 'string' } });
    if (values.help) return io.out(HELP.ca!), 0;
    const caPath = required(values.ca, '--ca', 'ca');
    const host = required(values.host, '--host', 'ca');
    const out = required(values.out, '--out', 'ca');
    const days = values.days === undefined ? 365 : Number(values.days);
    if (!Number.isInteger(days) || days < 1 || days > 3650) throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', '--days must be 1..3650');
    if ((statSync(caPath).mode & 0o077) !== 0) throw new TesseraError('TESSERA_ERR_KEY_FILE', `${caPath} is readable by group or others: run chmod 600 ${caPath}`);
    const ca = parseCaFile(readFileSync(caPath, 'utf8'));
    const key = await createHostKey();
    const certificate = await issueHostCertificate(ca, { host, hostPublicJwk: key.publicJwk, validityDays: days });
    mkdirSync(out, { recursive: true, mode: 0o700 });
    writeNew(join(out, `${host}.cert`), certificate + '\n', 0o644);
    writeNew(join(out, `${host}.key.json`), serializeHostIdentity({ mode: 'ca', hostId: host, ...key, certificate }), 0o600);
    io.out(`wrote ${join(out, host + '.cert')} and ${join(out, host + '.key.json')} (private)`);
    return 0;
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return io.out(HELP.ca!), 0;
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `unknown subcommand "ca ${sub}"\nSee: tessera ca --help`);
}

export async function pskCommand(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'init') {
    const { values } = parse('psk', rest, { out: { type: 'string' } });
    if (values.help) return io.out(HELP.psk!), 0;
    const out = required(values.out, '--out', 'psk');
    writeNew(out, serializeSecret(createSecret(), 'psk'), 0o600);
    io.out(`wrote ${out} (private: copy it to every host, mode 600)`);
    return 0;
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return io.out(HELP.psk!), 0;
  throw new TesseraError('TESSERA_ERR_INVALID_ARGUMENT', `unknown subcommand "psk ${sub}"\nSee: tessera psk --help`);
}
