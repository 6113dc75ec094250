// The UDP exchange against an attacker on the real kernel path (issue 13: "the same properties
// as protocol v2"). A client PU on host a, a UDP echo server PU on host b, and the attacker on
// the router r between them: r sees every forwarded packet (an AF_PACKET socket) and sends any
// bytes it likes with any source address (a raw socket). Each attack is asserted by its
// outcome: what b sends back (Replies, Retries, echo answers, counted on r), b's reason
// counters, and a legitimate query answered afterwards.
//
//   1. a captured Hello replayed verbatim after its exchange ended (inside the freshness
//      window), and the captured Confirm: nothing answered, nothing authorized;
//   2. the Hello replayed from another address and from many ports: refused by the host-wide
//      strike register, whichever of b's two workers (--queues 2, balanced by flow) a copy
//      reaches;
//   3. the Hello replayed after b's daemon restarted: refused (restarted, or stale);
//   4. forged Reply and Confirm injected into a flow being set up: refused, nothing delivered,
//      the flow completes once the path is clear;
//   5. a flood of a replayed Hello from 2,000 source ports: no answer, state bounded, legit
//      flows served during it.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { waitFor, sleep } from '../../scripts/lib/cluster.js';
import { isRoot, run } from '../../scripts/lib/netns.js';
import { metricSums } from '../helpers/metrics.js';
import { createRouted, type Routed } from '../helpers/router.js';
import { skipBecause } from '../helpers/skip.js';
import { udpEcho, udpQuery } from './udp-apps.js';

skipBecause(!isRoot, 'UDP exchange attacks (needs root)', 'integration tests need root: run npm test as root');

const PREFIX = 'udpprops';
const NET_A = 180;
const NET_B = 181;
const PORT = 5380;

/**
 * The attacker on r. argv[1] is a JSON job:
 *   {"mode":"capture","from":ADDR,"types":[1,3],"seconds":S}  prints {"ev":"ready"}, then one
 *       {"ev":"packet","type":T,"hex":...} per control packet of those types from ADDR (first of
 *       each type), and ends when it has one of each or the time is up;
 *   {"mode":"send","packets":[{"hex":..,"src":..,"sport":..}],"ports":[..],"watch":ADDR,"to":ADDR?,"seconds":S}
 *       sends each packet (re-addressed: src, sport, or once per port of "ports"), then counts
 *       for S seconds what ADDR sends: {"ev":"done","sent":n,"reply":x,"retry":y,"data":z};
 *   {"mode":"forge","reply":HEX,"watch":ADDR,"seconds":S} from a captured Reply (b to a): a
 *       Reply with macS changed to a, and a Confirm with a random macC and a query to b.
 */
const ATTACKER = String.raw`
import socket,struct,sys,json,time,os
MAGIC=bytes.fromhex('7e557501')
job=json.loads(sys.argv[1])
def out(o): print(json.dumps(o),flush=True)
def csum(b):
  if len(b)%2: b+=b'\0'
  s=sum(struct.unpack('!%dH'%(len(b)//2),b))
  while s>>16: s=(s&0xffff)+(s>>16)
  return (~s)&0xffff
def fix(p):
  ihl=(p[0]&15)*4
  p[10:12]=b'\0\0'; p[10:12]=struct.pack('!H',csum(bytes(p[:ihl])))
  ulen=struct.unpack('!H',bytes(p[ihl+4:ihl+6]))[0]
  p[ihl+6:ihl+8]=b'\0\0'
  c=csum(bytes(p[12:20])+struct.pack('!BBH',0,17,ulen)+bytes(p[ihl:ihl+ulen])) or 0xffff
  p[ihl+6:ihl+8]=struct.pack('!H',c)
  return bytes(p)
def readdress(h,src=None,sport=None):
  p=bytearray(bytes.fromhex(h)); ihl=(p[0]&15)*4
  if src: p[12:16]=socket.inet_aton(src)
  if sport is not None: p[ihl:ihl+2]=struct.pack('!H',sport)
  return fix(p)
def build(src,dst,sport,dport,payload):
  p=bytearray(struct.pack('!BBHHHBBH4s4s',0x45,0,28+len(payload),0,0,64,17,0,socket.inet_aton(src),socket.inet_aton(dst)))
  p+=struct.pack('!HHHH',sport,dport,8+len(payload),0)+payload
  return fix(p)
def parse(b):
  if len(b)<28 or b[0]>>4!=4 or b[9]!=17: return None
  ihl=(b[0]&15)*4
  return socket.inet_ntoa(b[12:16]),socket.inet_ntoa(b[16:20]),struct.unpack('!HH',b[ihl:ihl+4]),b[ihl+8:]
sniff=socket.socket(socket.AF_PACKET,socket.SOCK_DGRAM,socket.htons(0x0800))
sniff.settimeout(0.2)
def packets(seconds):
  end=time.time()+seconds
  while time.time()<end:
    try: b,addr=sniff.recvfrom(65535)
    except socket.timeout: continue
    if addr[2]==socket.PACKET_OUTGOING: continue
    q=parse(b)
    if q: yield b,q
raw=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)
def send(pkt): raw.sendto(pkt,(socket.inet_ntoa(pkt[16:20]),0))
def count(watch,seconds,to=None):
  r={'reply':0,'retry':0,'data':0,'other':0}
  for b,(s,d,ports,pl) in packets(seconds):
    if s!=watch or (to and d!=to): continue
    if pl[:4]==MAGIC: r['reply' if pl[4]==2 else 'retry' if pl[4]==4 else 'other']+=1
    else: r['data']+=1
  return r
if job['mode']=='capture':
  out({'ev':'ready'}); seen=set()
  for b,(s,d,ports,pl) in packets(job['seconds']):
    if s==job['from'] and pl[:4]==MAGIC and pl[4] in job['types'] and pl[4] not in seen:
      seen.add(pl[4]); out({'ev':'packet','type':pl[4],'hex':b.hex()})
      if len(seen)==len(job['types']): break
elif job['mode']=='send':
  n=0
  for p in job['packets']:
    for port in job.get('ports') or [p.get('sport')]:
      send(readdress(p['hex'],p.get('src'),port)); n+=1
  r=count(job['watch'],job['seconds'],job.get('to')); r.update(ev='done',sent=n); out(r)
elif job['mode']=='forge':
  b=bytes.fromhex(job['reply']); s,d,(sp,dp),pl=parse(b)
  bad=bytearray(b); ihl=(b[0]&15)*4; at=ihl+8+24
  bad[at]^=0x01
  send(fix(bad))
  q=b'q'*40
  send(build(d,s,dp,sp,MAGIC+bytes([3,0])+struct.pack('!H',len(q))+os.urandom(16)+q))
  r=count(job['watch'],job['seconds']); r.update(ev='done',sent=2); out(r)
`;

interface Sent {
  sent: number;
  reply: number;
  retry: number;
  data: number;
}

describe.runIf(isRoot)('the UDP exchange against an on-path attacker, on the real kernel path', () => {
  let net: Routed;

  const udpReasons = (socket: string) => metricSums(socket, /^tessera_udp_reasons_total\{[^}]*reason="((?!ok")[^"]+)"[^}]*\} (\d+)$/gm);
  const delta = (after: Record<string, number>, before: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) !== 0));
  const query = (tries = 3) => net.a.runPu(['app=dns'], udpQuery(net.b.addr, PORT, tries), 30_000);
  const answered = (r: { stdout: string }): boolean => r.stdout.trim() === 'echo:';

  /** Start the attacker with `job` on r; resolves its output lines as they come. */
  function attacker(job: object): { lines: Array<Record<string, unknown>>; done: Promise<void>; ready: Promise<void> } {
    const child = net.router.spawn(['python3', '-c', ATTACKER, JSON.stringify(job)]);
    const lines: Array<Record<string, unknown>> = [];
    let buf = '';
    let onReady!: () => void;
    const ready = new Promise<void>((r) => (onReady = r));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
        buf = buf.slice(i + 1);
        lines.push(l);
        if (l.ev === 'ready') onReady();
      }
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const done = new Promise<void>((res, rej) => child.once('exit', (code) => (code === 0 ? res() : rej(new Error(`attacker exited ${code}: ${err}`)))));
    return { lines, done, ready };
  }

  /** One legitimate query from a, its Hello and Confirm captured on r. */
  async function capture(): Promise<{ hello: string; confirm: string }> {
    const cap = attacker({ mode: 'capture', from: net.a.addr, types: [1, 3], seconds: 15 });
    await cap.ready;
    expect(answered(await query())).toBe(true);
    await cap.done;
    // The flow's entries expire on b (conntrack's, and with them the authorization): a copy
    // now meets the exchange as a new flow would, not an authorized one.
    await net.b.exec(['conntrack', '-D', '-p', 'udp']);
    const hex = (t: number) => cap.lines.find((l) => l.ev === 'packet' && l.type === t)?.hex as string;
    expect(hex(1), 'a captured Hello').toBeTruthy();
    expect(hex(3), 'a captured Confirm').toBeTruthy();
    return { hello: hex(1), confirm: hex(3) };
  }

  /** Send `packets` from r (each once per port of `ports`); count what b sends for `seconds` (only to `to`, when given). */
  async function send(packets: Array<{ hex: string; src?: string; sport?: number }>, ports?: number[], seconds = 2, to?: string): Promise<Sent> {
    const s = attacker({ mode: 'send', packets, ...(ports ? { ports } : {}), watch: net.b.addr, seconds, ...(to ? { to } : {}) });
    await s.done;
    return s.lines.find((l) => l.ev === 'done') as unknown as Sent;
  }

  beforeAll(async () => {
    // A run that died half way may have left our namespaces: they are ours to remove.
    for (const n of ['a', 'b', 'r', 'sw']) await run(['ip', 'netns', 'del', `${PREFIX}-${n}`]);
    net = await createRouted({ prefix: PREFIX, netA: NET_A, netB: NET_B, trust: 'ca', daemonArgs: ['--queues', '2'] });
    net.b.spawnPu(['app=dns'], udpEcho(4, PORT));
    await net.b.waitForListener(PORT, 20_000).catch(() => undefined);
    await waitFor('the echo server PU answering', async () => answered(await query(1)), 30_000, 200);
  }, 120_000);

  afterAll(async () => {
    await net?.destroy();
  }, 120_000);

  it('a captured Hello replayed verbatim after its exchange (inside the freshness window) is refused unanswered; the captured Confirm authorizes nothing', async () => {
    const { hello, confirm } = await capture();
    const before = await udpReasons(net.b.socket);
    const h = await send([{ hex: hello }]);
    const c = await send([{ hex: confirm }]);
    await sleep(600); // workers push their counters 250 ms after a busy spell
    const d = delta(await udpReasons(net.b.socket), before);
    console.log(`verbatim replay: Hello answered ${JSON.stringify(h)}, Confirm answered ${JSON.stringify(c)}; b's UDP reasons ${JSON.stringify(d)}`);
    expect(h.reply + h.retry + h.data, 'b answered a replayed Hello').toBe(0);
    expect(c.reply + c.retry + c.data, 'b answered a replayed Confirm').toBe(0);
    expect(d.replay ?? 0).toBeGreaterThanOrEqual(1);
    expect(answered(await query())).toBe(true);
  }, 90_000);

  it('the Hello replayed from another address and from 16 other ports is refused by the host-wide register, never answered', async () => {
    const { hello } = await capture();
    const before = await udpReasons(net.b.socket);
    const ports = Array.from({ length: 16 }, (_, i) => 20_000 + i * 997);
    const r = await send([{ hex: hello, src: net.router.addr }], ports);
    const fromA = await send([{ hex: hello }], ports.map((p) => p + 1));
    await sleep(600);
    const d = delta(await udpReasons(net.b.socket), before);
    console.log(`re-addressed replays: from r ${JSON.stringify(r)}, from a's address ${JSON.stringify(fromA)}; b's UDP reasons ${JSON.stringify(d)}`);
    expect(r.reply + r.retry + r.data, 'b answered the attacker').toBe(0);
    expect(fromA.reply + fromA.retry + fromA.data, 'b answered replays on new ports').toBe(0);
    expect(d.replay ?? 0).toBeGreaterThanOrEqual(32);
    expect(answered(await query())).toBe(true);
  }, 90_000);

  it("a Hello captured before b's daemon restarted is refused (restarted, or stale), never answered", async () => {
    const { hello } = await capture();
    await net.b.stopDaemon();
    await net.b.startDaemon();
    const before = await udpReasons(net.b.socket);
    const r = await send([{ hex: hello }, { hex: hello, src: net.router.addr, sport: 31_313 }]);
    await sleep(600);
    const d = delta(await udpReasons(net.b.socket), before);
    console.log(`replay after b's restart: answered ${JSON.stringify(r)}; b's UDP reasons ${JSON.stringify(d)}`);
    expect(r.reply + r.retry + r.data).toBe(0);
    expect((d.restarted ?? 0) + (d.stale ?? 0)).toBeGreaterThanOrEqual(2);
    await waitFor('the restarted daemon serving', async () => answered(await query(1)), 30_000, 200);
  }, 120_000);

  it('forged Reply and Confirm injected into a flow being set up are refused and deliver nothing; the flow completes once the path is clear', async () => {
    // r drops b's answers to a while it forges: a's exchange is half way (b holds its Hello).
    const drop = ['FORWARD', '-s', net.b.addr, '-d', net.a.addr, '-p', 'udp', '-j', 'DROP'];
    expect((await net.router.exec(['iptables', '-I', ...drop])).code).toBe(0);
    let removed = false;
    const unblock = async (): Promise<void> => {
      if (!removed) await net.router.exec(['iptables', '-D', ...drop]);
      removed = true;
    };
    try {
      const aBefore = await udpReasons(net.a.socket);
      const bBefore = await udpReasons(net.b.socket);
      const cap = attacker({ mode: 'capture', from: net.b.addr, types: [2], seconds: 10 });
      await cap.ready;
      const client = query(8);
      await cap.done;
      const reply = cap.lines.find((l) => l.ev === 'packet')?.hex as string;
      expect(reply, "b's Reply to a").toBeTruthy();
      const f = attacker({ mode: 'forge', reply, watch: net.b.addr, seconds: 1.0 });
      await f.done;
      const forged = f.lines.find((l) => l.ev === 'done') as unknown as Sent;
      await sleep(600);
      const da = delta(await udpReasons(net.a.socket), aBefore);
      const db = delta(await udpReasons(net.b.socket), bBefore);
      console.log(`forged Reply/Confirm: b sent ${JSON.stringify(forged)}; a's reasons ${JSON.stringify(da)}, b's ${JSON.stringify(db)}`);
      expect(forged.data, "b's server answered a forged Confirm's query").toBe(0);
      expect(da['bad-mac'] ?? 0).toBeGreaterThanOrEqual(1);
      expect(db.replay ?? 0).toBeGreaterThanOrEqual(1);
      await unblock();
      const r = await client;
      console.log(`the client once the path is clear: ${r.stdout.trim()}`);
      expect(answered(r)).toBe(true);
    } finally {
      await unblock();
    }
  }, 90_000);

  it('a flood of one captured Hello replayed from 2,000 source ports gets no answer, state stays bounded, and a legit flow is served during it', async () => {
    const { hello } = await capture();
    const before = await udpReasons(net.b.socket);
    const ports = Array.from({ length: 2000 }, (_, i) => 10_000 + i);
    // Counted: what b sends to r (the legitimate query's Reply and answer go to a).
    const flood = send([{ hex: hello, src: net.router.addr }], ports, 4, net.router.addr);
    await sleep(300);
    const during = await query(4);
    const r = await flood;
    await sleep(600);
    const d = delta(await udpReasons(net.b.socket), before);
    const state = await metricSums(net.b.socket, /^tessera_udp_state\{[^}]*map="([^"]+)"[^}]*\} (\d+)$/gm);
    console.log(`flood of a replayed Hello: ${JSON.stringify(r)}; b's reasons ${JSON.stringify(d)}; state ${JSON.stringify(state)}; legit query during it: ${during.stdout.trim()}`);
    expect(r.sent).toBe(2000);
    expect(r.reply + r.retry + r.data, 'b answered the flood').toBe(0);
    expect(d.replay ?? 0).toBeGreaterThanOrEqual(1900);
    expect(state.server ?? 0).toBeLessThanOrEqual(16_384 * 2);
    expect(answered(during)).toBe(true);
  }, 120_000);
});
