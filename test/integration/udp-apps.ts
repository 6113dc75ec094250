// The UDP applications of the UDP integration tests (python3 in the namespace hosts): an echo
// server and a resolver-like client that retries. Not a test file: udp.test.ts, udp-attacks.test.ts
// and nat.test.ts share them.

/** A UDP echo server: answers "echo:" + the query, forever. */
export function udpEcho(family: 4 | 6, port: number): string[] {
  return [
    'python3', '-c',
    [
      'import socket',
      `s=socket.socket(socket.${family === 6 ? 'AF_INET6' : 'AF_INET'}, socket.SOCK_DGRAM)`,
      `s.bind(("${family === 6 ? '::' : '0.0.0.0'}", ${port}))`,
      'while True:',
      '  d,a=s.recvfrom(4096)',
      '  s.sendto(b"echo:"+d,a)',
    ].join('\n'),
  ];
}

/** One query (a DNS-sized 40-byte datagram), two retries 1 s apart; prints the answer or "none". */
export function udpQuery(addr: string, port: number, tries = 3): string[] {
  const family = addr.includes(':') ? 'AF_INET6' : 'AF_INET';
  return [
    'python3', '-c',
    [
      'import socket',
      `s=socket.socket(socket.${family}, socket.SOCK_DGRAM); s.settimeout(1)`,
      'q=b"q"*40',
      'ans="none"',
      `for i in range(${tries}):`,
      `  s.sendto(q,("${addr}", ${port}))`,
      '  try:',
      '    d,_=s.recvfrom(4096)',
      '    ans=d[:5].decode(errors="replace"); break',
      '  except socket.timeout: pass',
      'print(ans)',
    ].join('\n'),
  ];
}

/**
 * Like udpQuery on a connected socket, which also hears ICMP errors: prints "echo:" (answered),
 * "refused" (an ICMP port unreachable came back) or "none".
 */
export function udpProbe(addr: string, port: number, tries = 3): string[] {
  const family = addr.includes(':') ? 'AF_INET6' : 'AF_INET';
  return [
    'python3', '-c',
    [
      'import socket',
      `s=socket.socket(socket.${family}, socket.SOCK_DGRAM); s.settimeout(1); s.connect(("${addr}", ${port}))`,
      'ans="none"',
      `for i in range(${tries}):`,
      '  try:',
      '    s.send(b"q"*40); d=s.recv(4096); ans=d[:5].decode(errors="replace"); break',
      '  except ConnectionRefusedError: ans="refused"; break',
      '  except socket.timeout: pass',
      'print(ans)',
    ].join('\n'),
  ];
}
