import type { NetworkApiArea } from './common.js';

export const subnetArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
