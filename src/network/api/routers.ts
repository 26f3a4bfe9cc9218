import type { NetworkApiArea } from './common.js';

export const routerArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
