import type { NetworkContext } from './index.js';

export class NetworkQuotaService {
  constructor(private readonly context: NetworkContext) {}
}
