// A small leveled logger writing one line per event to stderr. Services take a child
// logger named after themselves; NUBO_LOG_LEVEL (or [DEFAULT] log_level) sets the level.

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(name: string): Logger;
}

let globalLevel: LogLevel = (process.env.NUBO_LOG_LEVEL as LogLevel) in LEVELS ? (process.env.NUBO_LOG_LEVEL as LogLevel) : 'info';

export function setLogLevel(level: string): void {
  if (level in LEVELS) globalLevel = level as LogLevel;
}

export function createLogger(name = 'nubo'): Logger {
  const write = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < LEVELS[globalLevel]) return;
    const extra = fields ? ' ' + JSON.stringify(fields) : '';
    process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} ${name}: ${msg}${extra}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (child) => createLogger(`${name}.${child}`),
  };
}
