// Help texts. Each says exactly what the command does and accepts; docs/operations.md quotes
// the same options. test/unit/cli/help.test.ts checks that every option a command parses is
// documented here.

export const HELP: Record<string, string> = {
  main: `tessera — identity-based network authorization for containers and Linux processes

Usage: tessera <command> [options]

Commands:
  daemon     run the per-host daemon (root): datapath workers, rules, local API
  run        run a command as a protected process (PU) with labels
  status     show the daemon, its PUs and counters
  flows      show recent authorization decisions (--follow to stream)
  cleanup    remove every iptables chain and net_cls cgroup Tessera created, once the
             daemon has stopped (root)
  policy     check a policy file, explain a decision, show the running policy
  ca         create a CA and issue host certificates (CA trust mode)
  psk        create a pre-shared key file (PSK trust mode)
  version    print the version

Run 'tessera <command> --help' for the options of a command.
The CLI finds the daemon through --socket or TESSERA_SOCKET (default /run/tessera/tessera.sock).`,

  daemon: `Usage: tessera daemon (--psk-file FILE | --ca FILE --cert FILE --key FILE) [options]

Runs the per-host daemon: installs TESSERA- iptables chains, starts one datapath worker per
NFQUEUE number, and serves the local API. One daemon per network namespace and per
--cgroup-root: a second one refuses to start (TESSERA_ERR_LOCKED, naming the first).

At start it reconciles the rules in place (it never removes first) after re-adopting the
PUs still running, with their last known ports. SIGTERM or SIGINT stops it and LEAVES its
rules in place: PUs stay fail-closed (their handshakes are dropped, nothing passes
unjudged) until the next start, so a restart or an upgrade opens no window. To remove
them, pass --remove-rules-on-stop, or run tessera cleanup after the daemon has stopped.
A crash leaves them too (exit status 70 for an internal error).

Trust (one of):
  --psk-file FILE        shared secret file (tessera psk init); tokens are HS256
  --ca FILE              the CA's public file (ca.pub.json from tessera ca init)
  --cert FILE            this host's certificate (HOST.cert from tessera ca issue)
  --key FILE             this host's private key (HOST.key.json from tessera ca issue)
Key files must not be readable by group or others (chmod 600).

Options:
  --host-id NAME         host name in tokens, PSK mode (default: this machine's hostname)
  --queues N             datapath workers / NFQUEUE numbers (default 1, max 16)
  --queue-base N         first NFQUEUE number (default 0)
  --fail-open            let handshake packets through unauthorized when no worker reads
                         the queue (default: fail-closed, they are dropped); a full queue
                         drops either way
  --reject reset|drop    how a refused connection ends: TCP reset (default) or silence
  --state-dir DIR        host secret and state (default /var/lib/tessera)
  --socket PATH          local API socket (default /run/tessera/tessera.sock)
  --cgroup-root NAME     net_cls subtree for this daemon's PUs (default tessera)
  --mtu N                largest packet emitted after attaching a token (default 1500)
  --token-ttl SECONDS    token lifetime; re-issued at half of it (default 600)
  --clock-skew SECONDS   accepted clock difference between hosts (default 30)
  --policy FILE          YAML policy (docs/policy.md); default: the built-in same-labels
                         policy. The file is watched and re-read on change or SIGHUP; a
                         file with errors is refused (logged with line and column) and the
                         running policy stays
  --docker [SOCKET]      protect Docker containers as PUs: follow the engine on SOCKET
                         (default /var/run/docker.sock) and make every running container a
                         PU with its labels (docs/docker.md). Off unless given. An engine
                         that is not reachable is retried every 5 s. Names --socket in
                         $TESSERA_RUNTIME_FILE (default /run/tessera/docker-runtime) for the
                         runtime shim packaging/tessera-runc, which enrolls containers
                         before they start; kept on stop (the shim then refuses to start
                         containers: fail-closed)
  --metrics-listen ADDR:PORT
                         serve /metrics (Prometheus), /healthz and /readyz over TCP; a bare
                         port means 127.0.0.1 (off unless given; another address is logged)
  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent (default info)
  --accept-all           benchmark mode: handshake packets take their queue passes and are
                         accepted with no token, check or policy (NOT a security mode)
  --remove-rules-on-stop on SIGTERM/SIGINT, remove the rules (host and container namespaces)
                         and give adopted classids back: PUs are unprotected until the next
                         start. Default: a stop keeps enforcement in place
  -h, --help             show this help`,

  run: `Usage: tessera run --label KEY=VALUE [--label ...] [--name NAME] [--socket PATH] -- COMMAND [ARGS...]

Asks the daemon to create a processing unit (PU) with these labels, moves this process into
the PU's net_cls cgroup, then runs COMMAND inside it (stdin/stdout/stderr passed through;
exit status is COMMAND's). Every connection COMMAND or its children open or accept is
authorized by label. The PU ends when its last process exits.

Options:
  -l, --label KEY=VALUE  a label (repeatable, at least one); keys starting with @ are reserved
  --name NAME            a name shown by tessera status (default: the command line)
  --socket PATH          daemon socket (default: $TESSERA_SOCKET or /run/tessera/tessera.sock)
  -h, --help             show this help`,

  status: `Usage: tessera status [--json] [--socket PATH]

Shows the daemon's host identity, trust mode, policy, queues, counters, and every PU with
its labels, cgroup classid, processes and listening ports.

Options:
  --json                 machine-readable output
  --socket PATH          daemon socket (default: $TESSERA_SOCKET or /run/tessera/tessera.sock)
  -h, --help             show this help`,

  flows: `Usage: tessera flows [--follow] [--denied] [--limit N] [--json] [--socket PATH]
       tessera flows --revoke [--dry-run] [--json] [--socket PATH]

Shows recent authorization decisions: both identities, verdict, reason code, rule.
A policy change applies to new connections; --revoke re-judges the established
connections this host authorized against the running policy and cuts those it now
refuses (the local socket is destroyed and the peer gets a reset).

Options:
  -f, --follow           keep streaming new decisions until interrupted
  --denied               only refused connections
  --revoke               cut established connections the current policy refuses
  --dry-run              with --revoke: list them, cut nothing
  --limit N              how many recent decisions (default 50, max 10000)
  --json                 one JSON object per line
  --socket PATH          daemon socket (default: $TESSERA_SOCKET or /run/tessera/tessera.sock)
  -h, --help             show this help`,

  cleanup: `Usage: tessera cleanup [--cgroup-root NAME] [--force]

Removes every iptables and ip6tables chain whose name starts with TESSERA- (and the jumps to
them) in this network namespace, and the net_cls cgroups under NAME (default tessera):
processes still inside are moved out, not killed, and are then unprotected. Touches nothing
else. A stopped or crashed daemon leaves its rules in place (fail-closed); this is how they
are removed. Refuses (exit 1, TESSERA_ERR_LOCKED) while a daemon runs in this network
namespace or on this cgroup root.

Options:
  --cgroup-root NAME     net_cls subtree to clean (default tessera)
  --force                clean up even while a daemon runs: its rules go and its PUs'
                         processes leave their cgroups (unprotected)
  -h, --help             show this help`,

  ca: `Usage:
  tessera ca init --out DIR [--name NAME]
  tessera ca issue --ca DIR/ca.json --host HOST --out DIR [--days N]

init writes DIR/ca.json (the CA private key: keep it offline) and DIR/ca.pub.json (give it
to every daemon as --ca). issue writes DIR/HOST.cert and DIR/HOST.key.json for one host
(give them to that host's daemon as --cert and --key). Files are written with mode 600.

Options:
  --out DIR              output directory (created if missing)
  --name NAME            CA name (default tessera-ca)
  --ca FILE              the CA private file, for issue
  --host HOST            host name the certificate is for
  --days N               certificate validity in days (default 365)
  -h, --help             show this help`,

  policy: `Usage:
  tessera policy check FILE
  tessera policy explain --from LABELS --to LABELS --port N [--peer ADDR]
                         [--direction both|ingress|egress] [--policy FILE] [--json] [--socket PATH]
  tessera policy show [--socket PATH]

check validates a policy file: schema and semantic errors with line and column, and
warnings for rules that can never decide (shadowed) and conflicting networks. Exit status 1
when there are errors.
explain prints the decision for a client (--from) calling a server (--to) on a port, and
the rules that produced it, for the server's ingress and the client's egress check. LABELS
are key=value pairs separated by commas (or repeated flags), or "none" for a peer without
Tessera (then --peer ADDR is its address). It uses --policy FILE, or the running daemon's.
show prints the running daemon's policy.

Options:
  --from LABELS          the client's labels, or none
  --to LABELS            the server's labels, or none
  --port N               the server port
  --peer ADDR            the address of a peer without Tessera (network rules)
  --direction D          both (default), ingress (server side) or egress (client side)
  --policy FILE          explain against this file instead of the running daemon's policy
  --json                 machine-readable output
  --socket PATH          daemon socket (default: $TESSERA_SOCKET or /run/tessera/tessera.sock)
  -h, --help             show this help`,

  psk: `Usage: tessera psk init --out FILE

Writes a new random 32-byte pre-shared key to FILE (mode 600). Give the same file to every
daemon as --psk-file.

Options:
  --out FILE             where to write the key
  -h, --help             show this help`,
};
