// What the daemon reads when the runtime shim enrolls a created container: the network from
// the OCI spec, the checks on the init PID, the pending PU's identity, the request schema.
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { containerDirOfSpec, networkOfSpec, pendingPu, readEngineState, readEnrollFacts, removeRuntimeFile, writeRuntimeFile } from '../../../src/daemon/enroll.js';
import { parseEnrollContainerRequest } from '../../../src/api/schemas.js';

const ID = 'f'.repeat(64);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tessera-enroll-'));
  dirs.push(d);
  return d;
}

describe('networkOfSpec', () => {
  it('no network entry is the host network, an entry without path a new namespace, with a path a shared one', () => {
    expect(networkOfSpec({ linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] } })).toEqual({ kind: 'host' });
    expect(networkOfSpec({ linux: { namespaces: [{ type: 'pid' }, { type: 'network' }] } })).toEqual({ kind: 'own' });
    expect(networkOfSpec({ linux: { namespaces: [{ type: 'network', path: '/proc/42/ns/net' }] } })).toEqual({ kind: 'shared', path: '/proc/42/ns/net' });
    expect(networkOfSpec({})).toEqual({ kind: 'host' });
  });
});

describe('readEnrollFacts', () => {
  function fakeProc(cgroup: string, sameNs: boolean): { proc: string; bundle: string } {
    const root = tmp();
    const proc = join(root, 'proc');
    mkdirSync(join(proc, '77', 'ns'), { recursive: true });
    mkdirSync(join(proc, 'self', 'ns'), { recursive: true });
    writeFileSync(join(proc, '77', 'cgroup'), cgroup);
    writeFileSync(join(proc, 'self', 'ns', 'net'), 'x');
    if (sameNs) symlinkSync(join(proc, 'self', 'ns', 'net'), join(proc, '77', 'ns', 'net'));
    else writeFileSync(join(proc, '77', 'ns', 'net'), 'y');
    const bundle = join(root, 'bundle');
    mkdirSync(bundle);
    return { proc, bundle };
  }

  it('host network in the daemon\'s namespace: the net_cls cgroup of the init', async () => {
    const { proc, bundle } = fakeProc(`5:net_cls,net_prio:/docker/${ID}\n0::/docker/${ID}\n`, true);
    writeFileSync(join(bundle, 'config.json'), JSON.stringify({ linux: { namespaces: [{ type: 'pid' }] } }));
    expect(await readEnrollFacts({ id: ID, pid: 77, bundle, procRoot: proc })).toEqual({ network: { kind: 'host' }, netClsCgroup: `/docker/${ID}` });
    // dockerd names its own namespace by a path
    writeFileSync(join(bundle, 'config.json'), JSON.stringify({ linux: { namespaces: [{ type: 'network', path: '/var/run/docker/netns/default' }] } }));
    expect((await readEnrollFacts({ id: ID, pid: 77, bundle, procRoot: proc })).network).toEqual({ kind: 'host' });
  });

  it('another container\'s namespace is shared, a new one is its own', async () => {
    const { proc, bundle } = fakeProc(`5:net_cls:/docker/${ID}\n`, false);
    writeFileSync(join(bundle, 'config.json'), JSON.stringify({ linux: { namespaces: [{ type: 'network', path: '/proc/42/ns/net' }] } }));
    expect((await readEnrollFacts({ id: ID, pid: 77, bundle, procRoot: proc })).network).toEqual({ kind: 'shared', path: '/proc/42/ns/net' });
    writeFileSync(join(bundle, 'config.json'), JSON.stringify({ linux: { namespaces: [{ type: 'network' }] } }));
    expect((await readEnrollFacts({ id: ID, pid: 77, bundle, procRoot: proc })).network).toEqual({ kind: 'own' });
  });

  it('refuses a host-network container outside the daemon\'s namespace, a PID of another container, a missing bundle', async () => {
    const a = fakeProc(`5:net_cls:/docker/${ID}\n`, false);
    writeFileSync(join(a.bundle, 'config.json'), JSON.stringify({ linux: { namespaces: [] } }));
    await expect(readEnrollFacts({ id: ID, pid: 77, bundle: a.bundle, procRoot: a.proc })).rejects.toMatchObject({ code: 'TESSERA_ERR_ENROLL', message: expect.stringMatching(/network namespace/) });
    const b = fakeProc(`5:net_cls:/docker/${'e'.repeat(64)}\n`, true);
    writeFileSync(join(b.bundle, 'config.json'), '{}');
    await expect(readEnrollFacts({ id: ID, pid: 77, bundle: b.bundle, procRoot: b.proc })).rejects.toMatchObject({ code: 'TESSERA_ERR_ENROLL', message: expect.stringMatching(/not the init/) });
    await expect(readEnrollFacts({ id: ID, pid: 77, bundle: join(b.bundle, 'gone'), procRoot: b.proc })).rejects.toMatchObject({ code: 'TESSERA_ERR_ENROLL' });
  });
});

describe('pendingPu', () => {
  const created = { id: ID, name: 'web', image: 'tessera/busybox:local', labels: { app: 'nginx', 'bad!key': 'x' } };
  it('host network: user labels, @sys image, name and network=host', () => {
    const pu = pendingPu(created, 77, { network: { kind: 'host' }, netClsCgroup: `/docker/${ID}` });
    expect(pu.labels).toEqual(['app=nginx']);
    expect(pu.systemLabels).toEqual(['@sys:image=tessera/busybox:local', '@sys:name=web', '@sys:network=host']);
    expect([pu.networkMode, pu.pid, pu.netClsCgroup, pu.netnsPath]).toEqual(['host', 77, `/docker/${ID}`, undefined]);
    expect(pu.posture).toEqual([]);
  });
  it('own namespace: the init\'s namespace, no @sys:network until the start\'s inspect', () => {
    const pu = pendingPu(created, 77, { network: { kind: 'own' } });
    expect(pu.systemLabels).toEqual(['@sys:image=tessera/busybox:local', '@sys:name=web']);
    expect(pu.netnsPath).toBe('/proc/77/ns/net');
    expect(pu.networkMode).not.toBe('host');
  });
});

describe('runtime file', () => {
  it('names the socket, reports a replaced one, and is removed only by its own daemon', async () => {
    const f = join(tmp(), 'sub', 'docker-runtime');
    expect(await writeRuntimeFile(f, '/run/a.sock')).toBeUndefined();
    expect(readFileSync(f, 'utf8')).toBe('socket=/run/a.sock\n');
    expect(await writeRuntimeFile(f, '/run/b.sock')).toBe('/run/a.sock');
    await removeRuntimeFile(f, '/run/a.sock');
    expect(readFileSync(f, 'utf8')).toBe('socket=/run/b.sock\n');
    await removeRuntimeFile(f, '/run/b.sock');
    expect(() => readFileSync(f)).toThrow();
  });
});

describe('parseEnrollContainerRequest', () => {
  it('accepts the shim\'s request and refuses anything else', () => {
    expect(parseEnrollContainerRequest({ id: ID, pid: 77, bundle: '/run/x' })).toEqual({ id: ID, pid: 77, bundle: '/run/x' });
    for (const bad of [null, { id: ID, pid: 77 }, { id: '../x', pid: 77, bundle: '/b' }, { id: ID, pid: 1, bundle: '/b' }, { id: ID, pid: 7, bundle: 'rel' }, { id: ID, pid: 7, bundle: '/a/../b' }, { id: ID, pid: 7, bundle: '/b', extra: 1 }]) {
      expect(() => parseEnrollContainerRequest(bad)).toThrow(/TESSERA_ERR_API|must|unknown/);
    }
  });
});

describe('the engine\'s files (a container whose create event the daemon never saw)', () => {
  it('finds the container directory from the bundle\'s mounts and reads identity and network from it', async () => {
    const root = tmp();
    const dir = join(root, 'containers', ID);
    mkdirSync(dir, { recursive: true });
    const spec = { mounts: [{ destination: '/proc', source: 'proc' }, { destination: '/etc/hostname', source: join(dir, 'hostname') }] };
    expect(containerDirOfSpec(spec, ID)).toBe(dir);
    expect(containerDirOfSpec({ mounts: [{ destination: '/etc/hostname', source: '/elsewhere/hostname' }] }, ID)).toBeUndefined();
    expect(await readEngineState(dir, ID)).toBeUndefined();
    writeFileSync(join(dir, 'config.v2.json'), JSON.stringify({ Name: '/web', Config: { Image: 'img', Labels: { app: 'nginx', name: 'mine' } } }));
    writeFileSync(join(dir, 'hostconfig.json'), JSON.stringify({ NetworkMode: 'mynet' }));
    const state = await readEngineState(dir, ID);
    expect(state).toEqual({ created: { id: ID, name: 'web', image: 'img', labels: { app: 'nginx', name: 'mine' } }, networkMode: 'mynet' });
    const pu = pendingPu(state!.created, 77, { network: { kind: 'own' } }, state!.networkMode);
    expect(pu.systemLabels).toContain('@sys:network=mynet');
    expect(pu.labels).toEqual(['app=nginx', 'name=mine']);
    expect(pu.netnsPath).toBe('/proc/77/ns/net');
    expect(pendingPu(state!.created, 77, { network: { kind: 'own' } }, 'default').systemLabels).toContain('@sys:network=bridge');
  });
});
