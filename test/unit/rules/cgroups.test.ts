import { describe, expect, it } from 'vitest';
import { classidFor, createNetCls, findNetClsMounts, netClsMountOptions } from '../../../src/rules/cgroups.js';

describe('net_cls helpers', () => {
  it('classidFor is 0x7e55:<index>', () => {
    expect(classidFor(1)).toBe(0x7e550001);
    expect(classidFor(1023)).toBe(0x7e5503ff);
    expect(classidFor(5, 0x7e56)).toBe(0x7e560005);
    expect(() => classidFor(0)).toThrow(/index/);
    expect(() => classidFor(70000)).toThrow(/index/);
  });

  it('finds net_cls mounts, also combined ones', () => {
    const mounts = [
      'tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0',
      'cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0',
      'cgroup /sys/fs/cgroup/net_cls,net_prio cgroup rw,nosuid,nodev,noexec,relatime,net_cls,net_prio 0 0',
      'cgroup /run/my\\040dir cgroup rw,net_cls 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0',
    ].join('\n');
    expect(findNetClsMounts(mounts)).toEqual(['/sys/fs/cgroup/net_cls,net_prio', '/run/my dir']);
    expect(findNetClsMounts('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n')).toEqual([]);
  });

  it('mounts with the controllers net_cls is already bound to', () => {
    const head = '#subsys_name\thierarchy\tnum_cgroups\tenabled\n';
    expect(netClsMountOptions(head + 'cpu\t1\t1\t1\nnet_cls\t0\t1\t1\nnet_prio\t0\t1\t1\n')).toBe('net_cls');
    expect(netClsMountOptions(head + 'cpu\t1\t1\t1\nnet_cls\t10\t1\t1\nnet_prio\t0\t1\t1\n')).toBe('net_cls');
    expect(netClsMountOptions(head + 'net_cls\t7\t1\t1\ncpu\t1\t1\t1\nnet_prio\t7\t1\t1\n')).toBe('net_cls,net_prio');
  });

  it('validates names before touching anything', async () => {
    expect(() => createNetCls({ root: '../etc' })).toThrow(/root/);
    expect(() => createNetCls({ root: 'a/b' })).toThrow(/root/);
    expect(() => createNetCls({ root: 'ok', mountPoint: 'relative' })).toThrow(/absolute/);
    const n = createNetCls({ root: 'ok', mountPoint: '/nonexistent-tessera-test' });
    await expect(n.create('..', 1)).rejects.toMatchObject({ code: 'TESSERA_ERR_INVALID_ARGUMENT' });
    await expect(n.create('pu', 0)).rejects.toMatchObject({ code: 'TESSERA_ERR_INVALID_ARGUMENT' });
  });
});
