import type { NetworkContext } from './index.js';

export class SubnetService {
  constructor(private readonly context: NetworkContext) {}
}
