import { createCluster, sleep } from '../../scripts/lib/cluster.ts';
import { uniquePrefix } from '../../scripts/lib/netns.ts';
import { realPid } from '../lib/harness.ts';
import { createApiClient } from '../../src/api/index.ts';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
const cluster = await createCluster({ prefix: uniquePrefix('idl'), hosts: ['a', 'b'], subnet: 143, trust: 'psk', daemonArgs: ['--log-level', 'warn'] });
const sleepers: number[] = [];
try {
  const n = 999;
  await Promise.all(cluster.hosts.map(async (h) => {
    const sh = h.spawn(['sh', '-c', `i=0; while [ $i -lt ${n} ]; do sleep 600 & echo $!; i=$((i+1)); done; wait`]);
    let out = '';
    sh.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (let t = 0; t < 600 && out.split('\n').filter(Boolean).length < n; t++) await sleep(100);
    const pids = out.split('\n').filter(Boolean).map(Number);
    sleepers.push(...pids);
    const api = createApiClient(h.socket);
    for (let i = 0; i < pids.length; i += 8) await Promise.all(pids.slice(i, i + 8).map((pid, k) => api.createPu({ pid, labels: [`idle=${i + k}`], name: `idle ${i + k}` })));
  }));
  spawnSync('cp', [cluster.host('a').logFile, '/tmp/idl/diag3-a.log']);
  await sleep(12_000);
  spawnSync('cp', [cluster.host('a').logFile, '/tmp/idl/diag3-a2.log']);
  const pid = realPid(cluster.host('a').daemon!.pid!);
  console.log(readFileSync(cluster.host('a').logFile, 'utf8').split('\n').filter((l) => /monitor|nft|rules|probe/.test(l)).slice(0, 10).join('\n').slice(0, 3000));
  console.log(spawnSync('ps', ['-eo', 'pid,ppid,etime,args'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /nft (monitor|-i)|setpriv/.test(l) || l.includes(String(realPid(cluster.host('a').daemon!.pid!)))).join('\n'));
  spawnSync('sleep', ['25']); const r = { stdout: readFileSync(cluster.host('a').logFile, 'utf8').split('\n').filter((l) => l.includes('IDLDBG')).slice(-40).join('\n') };
  console.log(r.stdout.split('\n').slice(0, 40).map((l) => l.slice(0, 200)).join('\n'));
} finally {
  for (const p of sleepers) try { process.kill(p, 'SIGKILL'); } catch {}
  await cluster.destroy();
}
