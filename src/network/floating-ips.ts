import type { NetworkContext } from './index.js';

export class FloatingIpService {
  constructor(private readonly context: NetworkContext) {}
}
