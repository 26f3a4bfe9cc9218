import { randomUUID, randomBytes } from 'node:crypto';

/** A UUID in the dashed form Nova and Glance use. */
export const newUuid = (): string => randomUUID();
/** A 32-hex-character id, the form Keystone uses for its resources. */
export const newHexId = (): string => randomUUID().replace(/-/g, '');
/** A random URL-safe secret of the given byte length. */
export const newSecret = (bytes = 32): string => randomBytes(bytes).toString('base64url');
