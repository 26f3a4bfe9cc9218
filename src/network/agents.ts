import type { NetworkContext } from './index.js';

export class AgentService {
  constructor(private readonly context: NetworkContext) {}
  async start(): Promise<void> {}
  async close(): Promise<void> {}
}
