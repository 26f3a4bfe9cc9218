import type { NetworkContext } from './index.js';

export class SecurityGroupService {
  constructor(private readonly context: NetworkContext) {}
}
