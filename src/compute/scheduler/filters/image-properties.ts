import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter, type FilterOptions, passAll } from './base.js';

/** Nova's Architecture.canonicalize. */
export function canonicalArch(name: string | undefined): string | undefined {
  if (!name) return undefined;
  let n = name.toLowerCase();
  if (['i386', 'i486', 'i586', 'x86_32', 'x86_32p'].includes(n)) n = 'i686';
  if (n === 'amd64') n = 'x86_64';
  return n;
}
/** Nova's HVType.canonicalize. */
export function canonicalHvType(name: string | undefined): string | undefined {
  if (!name) return undefined;
  const n = name.toLowerCase();
  return n === 'xapi' ? 'xen' : n;
}
/** Nova's VMMode.canonicalize. */
export function canonicalVmMode(name: string | undefined): string | undefined {
  if (!name) return undefined;
  const n = name.toLowerCase();
  if (n === 'pv') return 'xen';
  if (n === 'hv' || n === 'baremetal') return 'hvm';
  return n;
}

/** 7002000 -> "7.2.0" (oslo versionutils.convert_version_to_str). */
export function versionToString(version: number): string {
  const parts: string[] = [];
  let v = Math.trunc(version);
  while (v !== 0) { parts.unshift(String(v % 1000)); v = Math.trunc(v / 1000); }
  return parts.join('.');
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0, y = pb[i] ?? 0;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** A version predicate such as ">=6.0, <6.2" (distutils VersionPredicate); a malformed one matches nothing. */
export function versionSatisfies(version: string, predicate: string): boolean {
  const clauses = predicate.split(',').map((c) => c.trim()).filter(Boolean);
  if (clauses.length === 0) return false;
  return clauses.every((clause) => {
    const m = /^(<=|>=|==|!=|<|>)\s*(\d+(?:\.\d+)*)$/.exec(clause);
    if (!m) return false;
    const c = compareVersions(version, m[2]);
    switch (m[1]) {
      case '<': return c < 0;
      case '<=': return c <= 0;
      case '>': return c > 0;
      case '>=': return c >= 0;
      case '==': return c === 0;
      default: return c !== 0;
    }
  });
}

/**
 * Passes hosts whose supported_instances ([arch, hypervisor_type, vm_mode]) cover the image's
 * hw_architecture / img_hv_type / hw_vm_mode (or the legacy architecture / hypervisor_type /
 * vm_mode), and whose hypervisor version satisfies img_hv_requested_version
 * (legacy hypervisor_version_requires). [filter_scheduler] image_properties_default_architecture
 * stands in for an image without an architecture.
 */
export class ImagePropertiesFilter extends BaseFilter {
  readonly name = 'ImagePropertiesFilter';
  override readonly runOncePerRequest = true;
  private readonly defaultArch: string | undefined;
  constructor(options: FilterOptions) {
    super();
    this.defaultArch = options.config.getOptional('filter_scheduler', 'image_properties_default_architecture') || undefined;
  }
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const p = spec.image?.properties ?? {};
    const wanted = [
      canonicalArch(p.hw_architecture ?? p.architecture ?? this.defaultArch),
      canonicalHvType(p.img_hv_type ?? p.hypervisor_type),
      canonicalVmMode(p.hw_vm_mode ?? p.vm_mode),
    ];
    if (!wanted.some(Boolean)) return passAll;
    const versionRequired = p.img_hv_requested_version ?? p.hypervisor_version_requires;
    return (host) => {
      if (!host.supportedInstances.length) return false;
      const versionOk = !versionRequired || !host.hypervisorVersion
        || versionSatisfies(versionToString(host.hypervisorVersion), versionRequired);
      if (!versionOk) return false;
      return host.supportedInstances.some(([arch, hvType, vmMode]) => {
        const offered = [canonicalArch(arch), canonicalHvType(hvType), canonicalVmMode(vmMode)];
        return wanted.every((w) => !w || offered.includes(w));
      });
    };
  }
}
