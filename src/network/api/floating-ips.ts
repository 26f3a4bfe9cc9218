import type { NetworkApiArea } from './common.js';

export const floatingIpArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
