// /v2.0/agents (`openstack network agent list/show/set/delete`): admin only, as in Neutron.
import type { FastifyInstance } from 'fastify';
import type { NetworkAgent } from '../agents.js';
import { authorize, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';
import { BodyReader } from './body.js';

export function agentView(agent: NetworkAgent): Record<string, unknown> {
  return {
    id: agent.id, agent_type: agent.agentType, binary: agent.binary, topic: agent.topic, host: agent.host,
    admin_state_up: agent.adminStateUp, alive: agent.alive, availability_zone: agent.availabilityZone,
    created_at: agent.createdAt, started_at: agent.startedAt, heartbeat_timestamp: agent.heartbeatTimestamp,
    description: agent.description, configurations: agent.configurations, resources_synced: null,
  };
}

function register(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { agents } = deps.network;

  app.get('/v2.0/agents', async (request) => {
    authorize(deps, request, 'get_agent');
    return listView(request, deps, 'agents', (await agents.list()).map(agentView));
  });

  app.get('/v2.0/agents/:id', async (request) => {
    authorize(deps, request, 'get_agent');
    return { agent: selectFields(request, agentView(await agents.get((request.params as { id: string }).id))) };
  });

  app.put('/v2.0/agents/:id', async (request) => {
    authorize(deps, request, 'update_agent');
    const body = new BodyReader(resourceBody(request.body, 'agent')).only(['admin_state_up', 'description']);
    const agent = await agents.update((request.params as { id: string }).id, { adminStateUp: body.boolean('admin_state_up'), description: body.has('description') ? body.nullableString('description') : undefined });
    return { agent: agentView(agent) };
  });

  app.delete('/v2.0/agents/:id', async (request, reply) => {
    authorize(deps, request, 'delete_agent');
    await agents.delete((request.params as { id: string }).id);
    return reply.code(204).send();
  });
}

export const agentArea: NetworkApiArea = {
  routes: register,
  policy: {
    get_agent: 'rule:admin_only',
    update_agent: 'rule:admin_only',
    delete_agent: 'rule:admin_only',
  },
  extensions: [
    { alias: 'agent', name: 'agent', description: 'The agent management extension.', updated: '2013-02-03T10:00:00-00:00' },
  ],
};
