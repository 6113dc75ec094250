// The inspect -> PU extractor on real `docker inspect` answers captured from dockerd 20.10
// (test/fixtures/docker/capture.sh made them), plus hand-made variations for cases the
// captured set cannot show.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { postureOf, puFromInspect, type InspectLike } from '../../../src/monitors/docker/index.js';
import { SENSITIVE_HOST_PATHS } from '../../../src/monitors/docker/extract.js';
import { canonicalLabels, parseUserLabel } from '../../../src/identity/index.js';

const FIXTURES = new URL('../../fixtures/docker/', import.meta.url);
function fixture(name: string): InspectLike & Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), 'utf8')) as InspectLike & Record<string, unknown>;
}
function flags(i: InspectLike): string[] {
  return postureOf(i).map((p) => p.flag);
}
function clone<T>(x: T): T {
  return structuredClone(x);
}

describe('puFromInspect on captured fixtures', () => {
  it('host network container: labels, system labels, PID, no IP, host-network flag', () => {
    const raw = fixture('host');
    const pu = puFromInspect(raw);
    expect(pu.id).toBe(raw.Id);
    expect(pu.id).toMatch(/^[0-9a-f]{64}$/);
    expect(pu.name).toBe(String(raw.Name).slice(1));
    expect(pu.running).toBe(true);
    expect(pu.pid).toBe(raw.State!.Pid);
    expect(pu.pid).toBeGreaterThan(1);
    expect(pu.networkMode).toBe('host');
    expect(pu.ip).toBeUndefined();
    // -l app=nginx -l tier=front, plus the image's LABEL org.tessera.image=busybox
    expect(pu.labels).toEqual(['app=nginx', 'org.tessera.image=busybox', 'tier=front']);
    expect(pu.systemLabels).toEqual(['@sys:image=tessera/busybox:local', `@sys:name=${pu.name}`, '@sys:network=host']);
    expect(pu.warnings).toEqual([]);
    expect(flags(raw)).toEqual(['host-network', 'root-user', 'writable-rootfs']);
    expect(postureOf(raw)[0]!.fix).toContain('--network bridge');
  });

  it('bridge container: IP on the bridge, netns path, no host-network flag', () => {
    const raw = fixture('bridge');
    const pu = puFromInspect(raw);
    expect(raw.HostConfig!.NetworkMode).toBe('default');
    expect(pu.networkMode).toBe('bridge');
    expect(pu.ip).toBe(raw.NetworkSettings!.Networks!.bridge!.IPAddress);
    expect(pu.ip).toMatch(/^10\.213\.200\.\d+$/);
    expect(pu.addresses).toEqual([{ network: 'bridge', ip: pu.ip }]);
    expect(pu.netnsPath).toMatch(/^\/var\/run\/docker\/netns\/[0-9a-f]{12}$/);
    expect(pu.labels).toContain('app=web');
    expect(pu.systemLabels).toContain('@sys:network=bridge');
    expect(flags(raw)).not.toContain('host-network');
  });

  it('privileged container (created, not running): privileged flag, pid 0, not running', () => {
    const raw = fixture('privileged');
    const pu = puFromInspect(raw);
    expect(pu.running).toBe(false);
    expect(pu.pid).toBe(0);
    expect(pu.netnsPath).toBeUndefined();
    expect(flags(raw)).toContain('privileged');
    expect(postureOf(raw).find((p) => p.flag === 'privileged')!.fix).toMatch(/drop --privileged/);
  });

  it('host PID/IPC/UTS namespaces are three flags, each naming its option', () => {
    const posture = postureOf(fixture('hostns'));
    expect(posture.filter((p) => p.flag.startsWith('host-')).map((p) => [p.flag, p.fix])).toEqual([
      ['host-pid', 'drop --pid=host'],
      ['host-ipc', 'drop --ipc=host'],
      ['host-uts', 'drop --uts=host'],
    ]);
  });

  it('volumes: writable /etc and the Docker socket are flagged; a named volume and a :ro data dir are not', () => {
    const raw = fixture('volumes');
    const posture = postureOf(raw);
    const writable = posture.filter((p) => p.flag === 'host-path-writable');
    expect(writable.map((p) => p.fix)).toEqual(['mount /etc read-only (-v /etc:/host-etc:ro) or drop it']);
    const sock = posture.filter((p) => p.flag === 'docker-socket').map((p) => p.fix);
    // /var/run/docker.sock itself, and / (read-only, but it holds the socket)
    expect(sock).toHaveLength(2);
    expect(sock.some((f) => f.startsWith('drop -v /var/run/docker.sock:/var/run/docker.sock'))).toBe(true);
    expect(sock.some((f) => f.startsWith('drop -v /:/hostroot: it exposes the Docker socket'))).toBe(true);
    expect(posture.map((p) => p.fix).join('\n')).not.toMatch(/\/cache|\/data/);
  });

  it('hardened container (--user 1000:1000 --read-only --network none) has no flags', () => {
    const raw = fixture('hardened');
    const pu = puFromInspect(raw);
    expect(pu.posture).toEqual([]);
    expect(pu.networkMode).toBe('none');
    expect(pu.ip).toBeUndefined();
    expect(pu.labels).toContain('app=batch');
  });

  it('labels: forged @-keys, bad keys and too-long values are dropped with a reason; the rest is canonical', () => {
    const raw = fixture('labels');
    const pu = puFromInspect(raw);
    // docker run -l overrides the image label; "eq=a=b" splits at the first '='; empty values are kept
    expect(pu.labels).toEqual(['empty=', 'env=prod', 'eq=a=b', 'org.tessera.image=overridden']);
    expect(pu.labels).toEqual([...canonicalLabels(pu.labels)]);
    for (const l of pu.labels) expect(() => parseUserLabel(l)).not.toThrow();
    expect(pu.warnings).toHaveLength(3);
    expect(pu.warnings.find((w) => w.includes('@sys:name'))).toMatch(/reserved/);
    expect(pu.warnings.find((w) => w.includes('"long"'))).toMatch(/300 bytes/);
    expect(pu.warnings.find((w) => w.includes('weird!key'))).toMatch(/only letters/);
    // The forged label does not reach the identity; the real name does.
    expect(pu.systemLabels).toContain(`@sys:name=${pu.name}`);
    expect([...pu.labels, ...pu.systemLabels].filter((l) => l.includes('forged'))).toEqual([]);
  });

  it('container sharing another container\'s netns names that container', () => {
    const shared = puFromInspect(fixture('shared'));
    const bridge = puFromInspect(fixture('bridge'));
    expect(shared.networkMode).toBe('container');
    expect(shared.netnsOf).toBe(bridge.id);
    expect(shared.ip).toBeUndefined();
    expect(shared.systemLabels).toContain('@sys:network=container');
  });

  it('user-defined network: mode other, IP on that network, its name as system label', () => {
    const raw = fixture('usernet');
    const pu = puFromInspect(raw);
    expect(pu.networkMode).toBe('other');
    expect(pu.networkName).toBe(raw.HostConfig!.NetworkMode);
    expect(pu.ip).toMatch(/^10\.213\.201\.\d+$/);
    expect(pu.systemLabels).toContain(`@sys:network=${raw.HostConfig!.NetworkMode}`);
  });

  it('exited and paused containers', () => {
    const exited = puFromInspect(fixture('exited'));
    expect([exited.running, exited.pid, exited.ip, exited.netnsPath]).toEqual([false, 0, undefined, undefined]);
    const paused = puFromInspect(fixture('paused'));
    expect(paused.running).toBe(true);
    expect(paused.paused).toBe(true);
    expect(paused.pid).toBeGreaterThan(1);
  });
});

describe('posture rules', () => {
  const base = fixture('hardened');

  it('root user: empty, "root", "0" and "0:0" are root; "1000" and "app" are not', () => {
    for (const user of ['', 'root', '0', '0:0', 'root:root']) {
      const i = clone(base);
      i.Config!.User = user;
      expect(flags(i), user).toEqual(['root-user']);
    }
    for (const user of ['1000', '1000:1000', 'app', 'nobody:nogroup']) {
      const i = clone(base);
      i.Config!.User = user;
      expect(flags(i), user).toEqual([]);
    }
  });

  it('NET_ADMIN (or ALL) is flagged because it lets a container rewrite its own netns rules', () => {
    const i = clone(base);
    i.HostConfig!.CapAdd = ['NET_ADMIN', 'CHOWN'];
    expect(postureOf(i)).toEqual([{ flag: 'net-admin', fix: 'drop --cap-add NET_ADMIN: it lets the container change its own firewall rules' }]);
    i.HostConfig!.CapAdd = ['CHOWN'];
    expect(flags(i)).toEqual([]);
  });

  it('sensitive paths: equal, inside and parent paths read-write are flagged; others and :ro are not', () => {
    const mount = (Source: string, RW = true) => {
      const i = clone(base);
      i.Mounts = [{ Type: 'bind', Source, Destination: '/x', RW }];
      return flags(i);
    };
    for (const p of ['/etc', '/etc/nginx', '/proc', '/sys', '/dev', '/root', '/boot', '/var/lib/docker', '/etc/']) {
      expect(mount(p), p).toEqual(['host-path-writable']);
      expect(mount(p, false), `${p}:ro`).toEqual([]);
    }
    for (const p of ['/var/run/docker.sock', '/run/docker.sock', '/run', '/var/run', '/var', '/']) {
      // read-only does not protect a socket: connect() ignores the mount's ro flag
      expect(mount(p, false), `${p}:ro`).toEqual(['docker-socket']);
      // the socket itself gets one flag (":ro" is no fix); a directory holding it gets both
      expect(mount(p), p).toEqual(p.endsWith('.sock') ? ['docker-socket'] : ['docker-socket', 'host-path-writable']);
    }
    for (const p of ['/tmp/data', '/srv/www', '/home/app', '/etcetera', '/var/www']) expect(mount(p), p).toEqual([]);
    expect(SENSITIVE_HOST_PATHS).toContain('/var/run/docker.sock');
  });

  it('volumes (Type volume) are never flagged', () => {
    const i = clone(base);
    i.Mounts = [{ Type: 'volume', Source: '/var/lib/docker/volumes/x/_data', Destination: '/x', RW: true }];
    expect(flags(i)).toEqual([]);
  });
});

describe('puFromInspect on partial answers', () => {
  it('an empty object gives a not-running PU without throwing', () => {
    const pu = puFromInspect({});
    expect(pu.running).toBe(false);
    expect(pu.pid).toBe(0);
    expect(pu.labels).toEqual([]);
    expect(pu.networkMode).toBe('bridge');
  });

  it('a system label whose value is too long is left out with a warning, never truncated', () => {
    const i = clone(fixture('bridge'));
    i.Config!.Image = `registry.example/${'x'.repeat(300)}`;
    const pu = puFromInspect(i);
    expect(pu.systemLabels.some((l) => l.startsWith('@sys:image='))).toBe(false);
    expect(pu.warnings.join('\n')).toMatch(/@sys:image left out/);
  });
});
