import type { NetworkContext } from './index.js';

export class RouterService {
  constructor(private readonly context: NetworkContext) {}
}
