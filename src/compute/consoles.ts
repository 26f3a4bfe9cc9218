// Remote consoles (Nova's get_vnc_console and console auth tokens): the API asks the host's
// agent where the instance's VNC server listens, stores a token for that address (only its
// SHA-256, as Nova does) valid [consoleauth] token_ttl seconds, and answers the noVNC URL
// `[vnc] novncproxy_base_url?path=%3Ftoken%3D<token>`. The console proxy (console-proxy.ts)
// redeems tokens with connectionFor(); as Nova's, a token is good for any number of
// connections until it expires or its instance is deleted. GET /os-console-auth-tokens/{token}
// shows one to the admin.
import { createHash, randomUUID } from 'node:crypto';
import type { Bus } from '../bus/types.js';
import type { Config } from '../core/config.js';
import { BadRequest, Conflict } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import type { Database } from '../db/index.js';
import type { HostService } from './hosts.js';
import { VmState, type Instance } from './instances.js';
import { agentClient } from './rpc.js';
import type { VncConsole } from './virt/driver.js';

export interface ConsoleConnection {
  instanceUuid: string;
  consoleType: string;
  host: string;
  port: number | null;
  internalAccessPath: string | null;
}

/** What the proxy needs to open a console: the VNC server and the URL base the token was issued for (origin checks). */
export interface ProxiedConsole extends ConsoleConnection {
  accessUrlBase: string;
}

export interface ConsoleDeps {
  config: Config;
  database: Database;
  bus: Bus;
  hosts: HostService;
  rpcTimeoutMs: number;
}

const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');

export class ConsoleService {
  private readonly vncEnabled: boolean;
  /** [vnc] novncproxy_base_url when set; else the page this cloud serves (useProxyAt), else Nova's default. */
  private readonly configuredBaseUrl: string | undefined;
  private defaultBaseUrl = 'http://127.0.0.1:6080/vnc_auto.html';
  private readonly tokenTtlSeconds: number;

  constructor(private readonly deps: ConsoleDeps) {
    this.vncEnabled = deps.config.getBool('vnc', 'enabled', true);
    this.configuredBaseUrl = deps.config.getOptional('vnc', 'novncproxy_base_url') || undefined;
    this.tokenTtlSeconds = deps.config.getInt('consoleauth', 'token_ttl', 600);
  }

  /** The noVNC page URLs point at when [vnc] novncproxy_base_url is not set: this cloud's own (known once it listens). */
  useProxyAt(pageUrl: string): void {
    this.defaultBaseUrl = pageUrl;
  }

  get novncBaseUrl(): string {
    return this.configuredBaseUrl ?? this.defaultBaseUrl;
  }

  /** A console of a protocol this cloud does not serve (SPICE, RDP, serial, MKS): 400, as Nova with them disabled. */
  unavailable(consoleType: string): never {
    throw new BadRequest(`Unavailable console type ${consoleType}.`);
  }

  /** The noVNC URL for the instance, with a new token (Nova's compute API get_vnc_console and the manager's part). */
  async vncConsoleUrl(instance: Instance, consoleType: string): Promise<string> {
    if (!instance.host) throw new Conflict(`Instance ${instance.id} is not ready`);
    if (instance.taskState === 'deleting' || instance.taskState === 'migrating') {
      throw new Conflict(`Cannot 'get_vnc_console' instance ${instance.id} while it is in task_state ${instance.taskState}`);
    }
    if (!this.vncEnabled) this.unavailable(consoleType);
    if (consoleType !== 'novnc') throw new BadRequest(`Invalid console type ${consoleType}`);
    const host = instance.host;
    if (!(await this.deps.hosts.isHostUp(host))) throw new Conflict(`Instance ${instance.id} is not ready: the compute service on ${host} is down`);
    const address = await agentClient(this.deps.bus, host, this.deps.rpcTimeoutMs).getVncConsole({ uuid: instance.id }).catch((err: Error) => {
      // A building instance the driver does not have yet is not ready (Nova's InstanceNotReady); so is any other refusal.
      throw new Conflict(instance.vmState === VmState.BUILDING ? `Instance ${instance.id} is not ready` : `Instance ${instance.id} is not ready: ${err.message}`);
    });
    return (await this.issueToken(instance.id, consoleType, address)).url;
  }

  /** A new token for the VNC server at `address` and the noVNC URL that carries it (Nova's ConsoleAuthToken.authorize). */
  async issueToken(instanceUuid: string, consoleType: string, address: VncConsole): Promise<{ token: string; url: string }> {
    const token = randomUUID();
    const now = new Date();
    const db = this.deps.database.db;
    const accessUrlBase = this.novncBaseUrl;
    await db.deleteFrom('compute_console_tokens').where('expires_at', '<=', now.toISOString()).execute();
    await db.insertInto('compute_console_tokens').values({
      id: newUuid(), token_hash: hashOf(token), console_type: consoleType, instance_id: instanceUuid, host: address.host,
      port: address.port, internal_access_path: address.internalAccessPath, access_url_base: accessUrlBase,
      expires_at: new Date(now.getTime() + this.tokenTtlSeconds * 1000).toISOString(), created_at: now.toISOString(),
    }).execute();
    // As Nova's ConsoleAuthToken.access_url: noVNC >= 1.1 takes the token inside its `path` parameter.
    return { token, url: `${accessUrlBase}?${new URLSearchParams({ path: `?token=${token}` }).toString()}` };
  }

  /** The connection a token stands for, or undefined when it is unknown, expired, or its instance is deleted. */
  async validate(token: string): Promise<ConsoleConnection | undefined> {
    return (await this.lookup(token))?.connection;
  }

  /**
   * The console a proxy may open for `token`, or why not. As Nova's proxy (_get_connect_info), beside the token's
   * expiry it asks the instance's host whether the VNC server is still where the token says (validate_console_port):
   * a token issued before a move or a restart on a new port is refused.
   */
  async connectionFor(token: string): Promise<{ console: ProxiedConsole } | { refused: string }> {
    if (!token) return { refused: 'no token' };
    const found = await this.lookup(token);
    if (!found) return { refused: 'unknown or expired token' };
    const { connection, accessUrlBase, instanceHost } = found;
    if (!instanceHost) return { refused: `instance ${connection.instanceUuid} has no host` };
    let current: VncConsole;
    try {
      current = await agentClient(this.deps.bus, instanceHost, this.deps.rpcTimeoutMs).getVncConsole({ uuid: connection.instanceUuid });
    } catch (err) {
      return { refused: `host ${instanceHost} cannot confirm the console of ${connection.instanceUuid}: ${(err as Error).message}` };
    }
    if (current.host !== connection.host || current.port !== connection.port || current.internalAccessPath !== connection.internalAccessPath) {
      return { refused: `the console of ${connection.instanceUuid} moved since the token was issued` };
    }
    return { console: { ...connection, accessUrlBase } };
  }

  private async lookup(token: string): Promise<{ connection: ConsoleConnection; accessUrlBase: string; instanceHost: string | null } | undefined> {
    const row = await this.deps.database.db.selectFrom('compute_console_tokens as t')
      .innerJoin('compute_instances as i', 'i.id', 't.instance_id')
      .select(['t.instance_id', 't.console_type', 't.host', 't.port', 't.internal_access_path', 't.access_url_base', 'i.host as instance_host'])
      .where('t.token_hash', '=', hashOf(token)).where('t.expires_at', '>', new Date().toISOString()).where('i.deleted_at', 'is', null)
      .executeTakeFirst() as any;
    if (!row) return undefined;
    const connection: ConsoleConnection = {
      instanceUuid: row.instance_id, consoleType: row.console_type, host: row.host,
      port: row.port === null || row.port === undefined ? null : Number(row.port), internalAccessPath: row.internal_access_path ?? null,
    };
    return { connection, accessUrlBase: row.access_url_base, instanceHost: row.instance_host ?? null };
  }

}
