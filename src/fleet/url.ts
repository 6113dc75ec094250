// `--cluster etcd://HOST:PORT,HOST:PORT` (etcds:// for TLS). Pure.

export interface Endpoint {
  host: string;
  port: number;
}

export interface ClusterUrl {
  tls: boolean;
  endpoints: Endpoint[];
}

/** Parse a cluster URL; throws an Error naming what is wrong. */
export function parseClusterUrl(text: string): ClusterUrl {
  const m = /^(etcds?):\/\/(.+)$/.exec(text.trim());
  if (!m) throw new Error(`cluster URL must look like etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS), got ${JSON.stringify(text)}`);
  const endpoints: Endpoint[] = [];
  for (const part of m[2]!.replace(/\/+$/, '').split(',')) {
    const hp = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part.trim());
    const port = hp ? Number(hp[2]) : NaN;
    if (!hp || port < 1 || port > 65535) throw new Error(`cluster URL member ${JSON.stringify(part)} must be HOST:PORT`);
    endpoints.push({ host: hp[1]!, port });
  }
  return { tls: m[1] === 'etcds', endpoints };
}
