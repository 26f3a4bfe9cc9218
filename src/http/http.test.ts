import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHttpApp } from './app.js';
import { useErrorFormat } from './errors.js';
import { requireAuthentication, authOf, type AuthContext } from './auth.js';
import { pageOf, parsePaging, nextPageUrl } from './paging.js';
import { createLogger, setLogLevel } from '../core/log.js';
import { Conflict, Unauthorized } from '../core/errors.js';

setLogLevel('silent');

function testApp() {
  const app = createHttpApp({ logger: createLogger('test') });
  // A service with Nova-style errors, to show each plugin renders its own format.
  app.register(async (scope) => {
    useErrorFormat(scope, (err) => ({ [err.status === 409 ? 'conflictingRequest' : 'badRequest']: { code: err.status, message: err.message } }));
    requireAuthentication(scope, {
      validateToken: async (token) => {
        if (token !== 'good') throw new Unauthorized();
        return { userId: 'u1' } as AuthContext;
      },
    });
    scope.get('/open', { config: { public: true } }, async () => ({ ok: true }));
    scope.get('/who', async (request) => ({ user: authOf(request).userId }));
    scope.post('/things', { schema: { body: { type: 'object', required: ['thing'], properties: { thing: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } } } } },
      async () => { throw new Conflict('thing exists'); });
    scope.get('/boom', async () => { throw new Error('secret internals'); });
  }, { prefix: '/svc' });
  return app;
}

describe('http app', () => {
  it('gives every response a request id', async () => {
    const app = testApp();
    const res = await app.inject({ method: 'GET', url: '/svc/open' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['x-openstack-request-id']), /^req-[0-9a-f-]{36}$/);
  });

  it('requires a valid token except on public routes', async () => {
    const app = testApp();
    assert.equal((await app.inject({ method: 'GET', url: '/svc/who' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/svc/who', headers: { 'x-auth-token': 'bad' } })).statusCode, 401);
    const ok = await app.inject({ method: 'GET', url: '/svc/who', headers: { 'x-auth-token': 'good' } });
    assert.deepEqual(ok.json(), { user: 'u1' });
  });

  it('renders validation, JSON and service errors in the service format, and hides internals', async () => {
    const app = testApp();
    const headers = { 'x-auth-token': 'good', 'content-type': 'application/json' };
    const missing = await app.inject({ method: 'POST', url: '/svc/things', headers, payload: '{"thing": {}}' });
    assert.equal(missing.statusCode, 400);
    assert.match(missing.json().badRequest.message, /'name'/);
    const badJson = await app.inject({ method: 'POST', url: '/svc/things', headers, payload: '{"thing": ' });
    assert.equal(badJson.statusCode, 400);
    assert.equal(badJson.json().badRequest.code, 400);
    const conflict = await app.inject({ method: 'POST', url: '/svc/things', headers, payload: '{"thing": {"name": "x"}}' });
    assert.deepEqual(conflict.json(), { conflictingRequest: { code: 409, message: 'thing exists' } });
    const boom = await app.inject({ method: 'GET', url: '/svc/boom', headers });
    assert.equal(boom.statusCode, 500);
    assert.doesNotMatch(boom.body, /secret internals/);
    const unknown = await app.inject({ method: 'GET', url: '/svc/nothing-here', headers });
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().badRequest.code, 404);
  });
});

describe('paging', () => {
  const items = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id }));
  it('pages with limit and marker and says where the next page starts', () => {
    const first = pageOf(items, (i) => i.id, parsePaging({ limit: '2' }, 1000));
    assert.deepEqual(first.items.map((i) => i.id), ['a', 'b']);
    assert.equal(first.next, 'b');
    const last = pageOf(items, (i) => i.id, parsePaging({ limit: '3', marker: 'b' }, 1000));
    assert.deepEqual(last.items.map((i) => i.id), ['c', 'd', 'e']);
    assert.equal(last.next, undefined);
    assert.equal(nextPageUrl('http://h/v2/images?limit=2&marker=a', 'b'), 'http://h/v2/images?limit=2&marker=b');
    assert.equal(nextPageUrl('/v2/images?limit=2', 'b'), '/v2/images?limit=2&marker=b');
  });
  it('caps limit at the maximum and refuses bad values and unknown markers', () => {
    assert.equal(parsePaging({ limit: '5000' }, 1000).limit, 1000);
    assert.throws(() => parsePaging({ limit: '-1' }, 1000), /limit must be a non-negative integer/);
    assert.throws(() => pageOf(items, (i) => i.id, { limit: 2, marker: 'zz' }), /marker zz could not be found/);
  });
});
