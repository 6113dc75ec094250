#!/usr/bin/env python3
"""Split a handler's CPU per connection into coarse buckets, from a BENCH_PERF recording.

  perf script -i DIR/tessera-ca-r1-rate.data -F tid,ip,sym,dso | python3 bench/lib/perf-split.py CONNECTIONS [HZ]

CONNECTIONS: connections made in that phase (rate: conn/s x seconds; latency: the count the
bench prints). HZ: perf's sampling frequency (bench/lib/harness.ts records at 4999 Hz).
Worker threads are the ones whose samples pass through the addon's on_readable; every other
thread (main, V8's platform threads) is bucketed by GC, TurboFan, or the rest. Kernel samples
of a worker are bucketed by syscall: a verdict's sendto carries the packet on through the
stack (and into the peer's queue), so its cost is the kernel path's, not only netlink's.
"""
import collections
import re
import sys

FRAME = re.compile(r'\s*([0-9a-f]+) (.*) \((.*)\)$')
GC = ('Scavenge', 'MarkCompact', 'Sweeper', 'ConcurrentMarking', 'IncrementalMarking', 'Heap::CollectGarbage', 'ArrayBufferSweeper', 'MinorMC')


def samples(lines):
    cur = None
    for line in lines:
        line = line.rstrip('\n')
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line.startswith('\t'):
            cur = (int(line.split()[0]), [])
        elif cur is not None:
            m = FRAME.match(line)
            if m:
                cur[1].append((m.group(2), m.group(3)))
    if cur:
        yield cur


def bucket(frames, worker):
    names = ' | '.join(n for n, _ in frames)
    kernel = frames[0][1].startswith('[kernel')
    gc = any(k in names for k in GC)
    if not worker:
        if gc:
            return 'other threads: GC'
        if 'compiler::' in names:
            return 'other threads: JIT (TurboFan)'
        return 'other threads: rest (main thread, platform)'
    if kernel:
        if '__sys_sendto' in names or 'sendmsg' in names:
            return 'worker k: sendto (verdicts; carries the packet on)'
        if 'recvmmsg' in names:
            return 'worker k: recvmmsg'
        if 'epoll' in names or 'schedule' in names:
            return 'worker k: epoll/schedule (sleep, wake)'
        if 'page_fault' in names:
            return 'worker k: page faults'
        return 'worker k: other (irq, mm, ...)'
    if gc:
        return 'worker u: GC on the thread'
    if 'on_readable' in names:
        return 'worker u: batch (JS + napi + addon)'
    return 'worker u: libuv/other'


def main():
    conns = float(sys.argv[1])
    hz = float(sys.argv[2]) if len(sys.argv) > 2 else 4999.0
    all_samples = [s for s in samples(sys.stdin) if s[1]]
    workers = {t for t, f in all_samples if any('on_readable' in n for n, _ in f)}
    counts = collections.Counter(bucket(f, t in workers) for t, f in all_samples)
    for k in sorted(counts):
        print(f'  {k:52s} {counts[k] / hz * 1e6 / conns:6.1f} us/conn')
    print(f'  {"total":52s} {sum(counts.values()) / hz * 1e6 / conns:6.1f} us/conn')


if __name__ == '__main__':
    main()
