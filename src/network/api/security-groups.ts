import type { NetworkApiArea } from './common.js';

export const securityGroupArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
