// The policy service: the running policy, its reload (file watch or SIGHUP), and what status
// says of it. A reload that does not compile is refused: logged, kept as `lastError`, health
// degraded (the file on disk is not what runs) until a later load succeeds; the running
// policy stays. Warnings of a loaded policy are logged and shown too.

import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { StatusResponse } from '../api/index.js';
import type { HealthService } from './health.js';
import { builtinPolicy, loadPolicyFile, watchPolicyFile, type LoadedPolicy } from './policy-source.js';

export type PolicyStatus = StatusResponse['policy'];

export interface PolicyServiceOptions {
  /** Absent: the built-in default. */
  file?: string;
  /** Hand a validated policy text to the workers (null = the default). */
  apply(text: string | null): void;
  log: Logger;
  health: HealthService;
  count(name: 'policy_reloads' | 'policy_reload_errors'): void;
  load?: (file: string) => LoadedPolicy;
  watch?: typeof watchPolicyFile;
  now?: () => Date;
}

export interface PolicyService {
  current(): LoadedPolicy;
  /** Re-read the file; false when it was refused or there is no file. */
  reload(why: string): boolean;
  status(): PolicyStatus;
  /** Reload on file changes until the returned function is called. */
  watch(): () => void;
  /** Run a policy that came from elsewhere (the fleet's verified bundle), already compiled. */
  adopt(next: LoadedPolicy, why: string): void;
}

/** Throws (TESSERA_ERR_POLICY) when the file does not compile: the daemon refuses to start. */
export function createPolicyService(o: PolicyServiceOptions): PolicyService {
  const now = o.now ?? (() => new Date());
  const load = o.load ?? loadPolicyFile;
  let current = o.file ? load(o.file) : builtinPolicy();
  let loadedAt = now().toISOString();
  let lastError: PolicyStatus['lastError'];
  const warnAbout = (p: LoadedPolicy, why: string): void => {
    if (p.warnings.length) o.log.warn({ why, policy: p.name, warnings: p.warnings }, `policy loaded with ${p.warnings.length} warning(s) (tessera policy check shows them)`);
  };
  warnAbout(current, 'start');
  o.health.setReady('policy', true);

  function reload(why: string): boolean {
    if (!o.file) {
      o.log.info({ why }, 'no --policy file: nothing to reload');
      return false;
    }
    let next: LoadedPolicy;
    try {
      next = load(o.file);
    } catch (err) {
      o.count('policy_reload_errors');
      const message = errorMessage(err);
      lastError = { message, at: now().toISOString() };
      o.health.degrade('policy', `policy reload refused, the previous policy runs: ${message.split('\n').slice(0, 2).join(' ')}`);
      o.log.error({ why, err: message }, 'policy reload refused; the running policy stays');
      return false;
    }
    o.health.recover('policy');
    if (next.text === current.text) return true;
    install(next, why);
    return true;
  }

  /** A policy from elsewhere (the fleet), already compiled and verified. */
  function adopt(next: LoadedPolicy, why: string): void {
    o.health.recover('policy');
    lastError = undefined;
    if (next.text !== current.text || next.revision !== current.revision) install(next, why);
  }

  function install(next: LoadedPolicy, why: string): void {
    current = next;
    loadedAt = now().toISOString();
    o.apply(next.text);
    o.count('policy_reloads');
    o.log.info({ why, policy: next.name }, 'policy reloaded: applies to new connections');
    warnAbout(next, why);
  }

  return {
    current: () => current,
    reload,
    adopt,
    status: () => ({ source: current.source, revision: current.revision, loadedAt, warnings: [...current.warnings], ...(lastError ? { lastError: { ...lastError } } : {}) }),
    watch: () => (o.file ? (o.watch ?? watchPolicyFile)(o.file, () => void reload('file changed')) : () => {}),
  };
}
