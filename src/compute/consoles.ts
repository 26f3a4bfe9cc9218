// Remote consoles (Nova's get_vnc_console and console auth tokens): the API asks the host's
// agent where the instance's VNC server listens, stores a token for that address (only its
// SHA-256, as Nova does) valid [consoleauth] token_ttl seconds, and answers the noVNC URL
// `[vnc] novncproxy_base_url?path=%3Ftoken%3D<token>`. The console proxy, which validates the
// token and connects to the VNC server, comes with the QEMU driver; until then a token can be
// checked with GET /os-console-auth-tokens/{token}.
import { createHash, randomUUID } from 'node:crypto';
import type { Bus } from '../bus/types.js';
import type { Config } from '../core/config.js';
import { BadRequest, Conflict } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import type { Database } from '../db/index.js';
import type { HostService } from './hosts.js';
import { VmState, type Instance } from './instances.js';
import { agentClient } from './rpc.js';

export interface ConsoleConnection {
  instanceUuid: string;
  consoleType: string;
  host: string;
  port: number | null;
  internalAccessPath: string | null;
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
  private readonly novncBaseUrl: string;
  private readonly tokenTtlSeconds: number;

  constructor(private readonly deps: ConsoleDeps) {
    this.vncEnabled = deps.config.getBool('vnc', 'enabled', true);
    this.novncBaseUrl = deps.config.get('vnc', 'novncproxy_base_url', 'http://127.0.0.1:6080/vnc_auto.html');
    this.tokenTtlSeconds = deps.config.getInt('consoleauth', 'token_ttl', 600);
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
    const token = randomUUID();
    const now = new Date();
    const db = this.deps.database.db;
    await db.deleteFrom('compute_console_tokens').where('expires_at', '<=', now.toISOString()).execute();
    await db.insertInto('compute_console_tokens').values({
      id: newUuid(), token_hash: hashOf(token), console_type: consoleType, instance_id: instance.id, host: address.host,
      port: address.port, internal_access_path: address.internalAccessPath, access_url_base: this.novncBaseUrl,
      expires_at: new Date(now.getTime() + this.tokenTtlSeconds * 1000).toISOString(), created_at: now.toISOString(),
    }).execute();
    // As Nova's ConsoleAuthToken.access_url: noVNC >= 1.1 takes the token inside its `path` parameter.
    return `${this.novncBaseUrl}?${new URLSearchParams({ path: `?token=${token}` }).toString()}`;
  }

  /** The connection a token stands for, or undefined when it is unknown, expired, or its instance is deleted. */
  async validate(token: string): Promise<ConsoleConnection | undefined> {
    const row = await this.deps.database.db.selectFrom('compute_console_tokens as t')
      .innerJoin('compute_instances as i', 'i.id', 't.instance_id')
      .select(['t.instance_id', 't.console_type', 't.host', 't.port', 't.internal_access_path'])
      .where('t.token_hash', '=', hashOf(token)).where('t.expires_at', '>', new Date().toISOString()).where('i.deleted_at', 'is', null)
      .executeTakeFirst() as any;
    if (!row) return undefined;
    return {
      instanceUuid: row.instance_id, consoleType: row.console_type, host: row.host,
      port: row.port === null || row.port === undefined ? null : Number(row.port), internalAccessPath: row.internal_access_path ?? null,
    };
  }

}
