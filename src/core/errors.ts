// One error hierarchy for every service. Each service's API renders these in its own
// OpenStack error format (Keystone: {"error": {...}}, Nova: {"badRequest": {...}}, ...).

export class NuboError extends Error {
  readonly status: number;
  readonly title: string;
  constructor(status: number, title: string, message: string) {
    super(message);
    this.status = status;
    this.title = title;
    this.name = new.target.name;
  }
}

export class BadRequest extends NuboError {
  constructor(message: string) { super(400, 'Bad Request', message); }
}
export class Unauthorized extends NuboError {
  constructor(message = 'The request you have made requires authentication.') { super(401, 'Unauthorized', message); }
}
export class Forbidden extends NuboError {
  constructor(message = 'You are not authorized to perform the requested action.') { super(403, 'Forbidden', message); }
}
export class NotFound extends NuboError {
  constructor(message: string) { super(404, 'Not Found', message); }
}
export class MethodNotAllowed extends NuboError {
  constructor(message: string) { super(405, 'Method Not Allowed', message); }
}
export class Conflict extends NuboError {
  constructor(message: string) { super(409, 'Conflict', message); }
}
export class OverQuota extends NuboError {
  constructor(message: string) { super(413, 'Request Entity Too Large', message); }
}
export class UnsupportedMediaType extends NuboError {
  constructor(message: string) { super(415, 'Unsupported Media Type', message); }
}
export class InternalError extends NuboError {
  constructor(message = 'An unexpected error prevented the server from fulfilling your request.') {
    super(500, 'Internal Server Error', message);
  }
}
export class ServiceUnavailable extends NuboError {
  constructor(message: string) { super(503, 'Service Unavailable', message); }
}
/** An RPC call that nobody answered in time. */
export class Timeout extends NuboError {
  constructor(message: string) { super(504, 'Gateway Timeout', message); }
}
