import type { NetworkContext } from './index.js';

export class PortService {
  constructor(private readonly context: NetworkContext) {}
}
