import type { NetworkApiArea } from './common.js';

export const networkArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
