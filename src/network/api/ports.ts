import type { NetworkApiArea } from './common.js';

export const portArea: NetworkApiArea = {
  routes() {},
  policy: {},
  extensions: [],
};
