// Nova's extra-spec requirement language (nova/scheduler/filters/extra_specs_ops.py semantics):
// a requirement is either a plain value (string equality) or "<op> <operand>":
//   =  (numeric >=), ==, !=, >=, <= (numeric), s==, s!=, s<, s<=, s>, s>= (string),
//   <in> (substring), <all-in> (every word a substring), <or> a <or> b ... (one of).
// An unknown first word means the whole requirement is compared as a string.

const num = (x: string): number => (x.trim() === '' ? NaN : Number(x));
const numeric = (test: (a: number, b: number) => boolean) => (x: string, y: string) => {
  const a = num(x), b = num(y);
  return Number.isFinite(a) && Number.isFinite(b) && test(a, b);
};

const OPERATORS: Record<string, (value: string, operand: string) => boolean> = {
  '=': numeric((a, b) => a >= b),
  '==': numeric((a, b) => a === b),
  '!=': numeric((a, b) => a !== b),
  '>=': numeric((a, b) => a >= b),
  '<=': numeric((a, b) => a <= b),
  's==': (a, b) => a === b,
  's!=': (a, b) => a !== b,
  's<': (a, b) => a < b,
  's<=': (a, b) => a <= b,
  's>': (a, b) => a > b,
  's>=': (a, b) => a >= b,
  '<in>': (a, b) => a.includes(b),
};

/** Whether a host value satisfies one requirement string. A null value satisfies nothing but plain-string equality with null. */
export function matchesRequirement(value: string | null, requirement: string): boolean {
  const words = requirement.split(/\s+/).filter(Boolean);
  const op = words.shift();
  const known = op !== undefined && (op === '<or>' || op === '<all-in>' || op in OPERATORS);
  if (!known) return value === requirement;
  if (value === null) return false;
  if (op === '<or>') {
    // "<or> v1 <or> v2 <or> v3": every other word is a candidate value.
    for (let i = 0; i < words.length; i += 2) if (words[i] === value) return true;
    return false;
  }
  if (words.length === 0) return false;
  if (op === '<all-in>') return words.every((w) => value.includes(w));
  return OPERATORS[op!](value, words[0]);
}

/** How Python's str() renders a value: the filters compare host attributes the way Nova does. */
export function pythonStr(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return pythonRepr(value);
}

function pythonRepr(value: unknown): string {
  if (typeof value === 'string') return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (Array.isArray(value)) return `[${value.map(pythonRepr).join(', ')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${pythonRepr(k)}: ${pythonRepr(v)}`).join(', ')}}`;
  }
  return pythonStr(value);
}
