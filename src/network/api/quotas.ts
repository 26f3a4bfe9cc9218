import type { NetworkApiArea } from './common.js';

export const quotaArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
