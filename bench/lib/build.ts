// Builds the C programs into bench/out/ (only when a source is newer than its binary) and the
// npm `nfqueue` binding when it was installed without being compiled.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../scripts/lib/netns.js';
import { TesseraError } from '../../src/errors.js';

const PROGRAMS: { name: string; libs: string[] }[] = [
  { name: 'server', libs: [] },
  { name: 'client', libs: [] },
  { name: 'nfq_accept', libs: ['libnetfilter_queue', 'libmnl'] },
];

function newer(src: string, out: string): boolean {
  return !existsSync(out) || statSync(src).mtimeMs > statSync(out).mtimeMs;
}

async function linkFlags(pkgs: string[]): Promise<string[]> {
  if (pkgs.length === 0) return [];
  const r = await run(['pkg-config', '--cflags', '--libs', ...pkgs]);
  // Without pkg-config the usual names still link on Debian.
  return r.code === 0 ? r.stdout.trim().split(/\s+/).filter(Boolean) : ['-lnetfilter_queue', '-lmnl'];
}

/** Compile bench/c/*.c into bench/out/; returns the output directory. */
export async function buildPrograms(root: string, log: (s: string) => void): Promise<string> {
  const out = join(root, 'bench/out');
  mkdirSync(out, { recursive: true });
  for (const p of PROGRAMS) {
    const src = join(root, 'bench/c', `${p.name}.c`);
    const bin = join(out, p.name);
    if (!newer(src, bin)) continue;
    log(`bench: compiling ${p.name}.c`);
    const r = await run(['gcc', '-O2', '-Wall', '-Wextra', '-o', bin, src, ...(await linkFlags(p.libs))], { timeoutMs: 120_000 });
    if (r.code !== 0) {
      throw new TesseraError(
        'TESSERA_ERR_PREREQ',
        `gcc failed for bench/c/${p.name}.c (install build-essential libnetfilter-queue-dev libmnl-dev, or run scripts/setup.sh):\n${r.stderr}`,
      );
    }
  }
  return out;
}

/** Build node_modules/nfqueue if its .node file is missing; returns an error note or null. */
export async function ensureNfqueueBinding(root: string, log: (s: string) => void): Promise<string | null> {
  const dir = join(root, 'node_modules/nfqueue');
  if (!existsSync(dir)) return 'npm package nfqueue is not installed';
  if (existsSync(join(dir, 'build/Release/nfqueue.node'))) return null;
  log('bench: building the npm nfqueue binding (node-gyp rebuild)');
  // run() has no cwd option: node-gyp must run inside the package folder.
  const r = await run(['sh', '-c', 'cd "$0" && npx node-gyp rebuild', dir], { timeoutMs: 300_000 });
  if (r.code !== 0 || !existsSync(join(dir, 'build/Release/nfqueue.node'))) {
    return `node-gyp rebuild of nfqueue failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`;
  }
  return null;
}
