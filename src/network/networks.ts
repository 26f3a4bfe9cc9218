import type { NetworkContext } from './index.js';

export class NetworkService {
  constructor(private readonly context: NetworkContext) {}
}
