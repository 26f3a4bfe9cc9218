import type { NetworkApiArea } from './common.js';

export const agentArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
