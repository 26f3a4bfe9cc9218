// Key pairs over HTTP: generated RSA pairs (the private key matches the OpenSSH public key and
// the MD5 fingerprint), imported ssh-rsa / ssh-ed25519 / ecdsa keys with fingerprints computed
// by ssh-keygen, x509 (2.2), per-user ownership and admin user_id (2.10), paging (2.35),
// name validation, conflicts, quota key_pairs and status codes per microversion.
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, unique, type ComputeCloud } from './harness.js';

// Fingerprints below were computed with `ssh-keygen -l -E md5` and `openssl x509 -fingerprint -sha1`.
const RSA = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCmYlz0tyys+efj59q3XnASToiH8k/0eK8p6cnGDbR8L46wpvqiT17dN/iJ6X0Fc+id8eDluqxfTPngslkq6FZr036sbkWS3+zbvA29Bqhi8qIdskiLhKJ7nKRO2f5zLBjOWDHJieBXAMullQypnO6/JnuEOxLhNCisxWbRZM+oUWtrt+7drAc8/c2lorMU/QWVPR39SAHrBI+EKZDWyFKPkgw1s0VJoe7h83TEXKQ/DRopK+dcPMBiGg7nxE6wKfOrSDoakWaGC9hE4PZV1qz6v39YGXxCu/H7vefdbPoFpbpH+ErXvhC0jHsJJOZVy4GFPcF2QtMyzTg+I8767Hil test@nubo';
const RSA_FP = 'ba:34:77:6b:d2:07:c1:ba:33:2c:45:2d:ab:84:31:d6';
const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHi5ZzBOD+7QOT6wWkV6wAPYfIyvkT8zmWd9ItTUAHOX root@vm';
const ED25519_FP = '3f:cc:1c:22:4f:27:29:9a:63:48:f5:62:8b:be:f0:53';
const ECDSA = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBaBvkCSHBnTt57jcY2P19fr/zzJna6ksT5SoGG2Xro4nG6vSNyt807nPeZVBQj/HxkGE0x7K1F8Ab+WQBiW/h4= ec@nubo';
const ECDSA_FP = '1a:35:85:86:36:5a:a1:a7:95:58:86:32:31:4e:40:7c';
const CERT = `-----BEGIN CERTIFICATE-----
MIIC/zCCAeegAwIBAgIUTbTJDc+3qhuHaW0nu3epHYOP+y4wDQYJKoZIhvcNAQEL
BQAwDzENMAsGA1UEAwwEdGVzdDAeFw0yNjEyMDIwMTE2MjhaFw0yNzAxMDEwMTE2
MjhaMA8xDTALBgNVBAMMBHRlc3QwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK
AoIBAQC2vGGZBIf4k5eg7ILkaqVvly0gUGtdAee/R0bTkOc5ImFkC/CZuIhW41Hg
KjMNlNvo/dnRWN1QowPE71VKsUUEyYtxyn7K4C8e1tVP83FgR8y8bjsy8emkOeE5
e87BIzmZC/lnfxcBmXM9GnWkjDH0BCBWhqGlNXdVsDvKlAP3JLeGCUrfdxUVqzRN
up8c1KLj9gZhOD/p+bevzapGn2kjbZ9H1f9Ctn3cwLnBhc6yADvqU9VJPYlxSPuN
tXjVxCtdrHV8eFwTgxjm8grAhBSqyfCJv5lWQyCMofs+Tp2SEA1aB6urBbowD1kD
4hdpOEfJPQd5OqyiFYl7Z65oJ9EVAgMBAAGjUzBRMB0GA1UdDgQWBBRbg7FkuOWW
Vbw/WxhF+E/CUlAErjAfBgNVHSMEGDAWgBRbg7FkuOWWVbw/WxhF+E/CUlAErjAP
BgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQBathAZSRV3GflxMRNN
Hfgdqh616w+lmmEXzZgNBD4HJO0nHeKjcsG9NbJeTdDLVLQEQ7K02lOFKaQWXA+d
B0TZRIK/G51iOrjkdULcUYIlpYr2LlJWbe9YzHd1vWxCjN3xGr0ToBQYgshc8idN
k7eMdExqi7jh+L21pxAAGuO98OPKOS776RurXBZ3zIq0jmkPZfSKaaNjzi/dQMj8
PkLXyJEdKw/TVfOy9s2begDkGWRXB2q/aCxL/x5aXrq5/6fg+wYrAz+0ucrDP469
4VoYl614p7cp3r1Vmg43dbd4SBWhaJ61vV0w8PrupQj9hgWEPzkEcaYWEm5aW3bh
s/9m
-----END CERTIFICATE-----
`;
const CERT_FP = '64:88:4c:7b:eb:71:70:d7:92:19:84:54:37:88:63:d0:9a:7a:0a:04';

describe('keypairs', () => {
  let cc: ComputeCloud;

  before(async () => { cc = await startComputeCloud({ quota: { key_pairs: '6' } }, 1); });
  after(async () => cc?.close());

  it('generates an RSA key pair whose private key matches the OpenSSH public key and its fingerprint', async () => {
    const name = unique('gen');
    const res = await cc.post('/os-keypairs', { keypair: { name } }, { microversion: '2.2', token: cc.demoToken });
    assert.equal(res.status, 201, res.text);
    const k = res.body.keypair;
    assert.deepEqual(Object.keys(k).sort(), ['fingerprint', 'name', 'private_key', 'public_key', 'type', 'user_id']);
    assert.equal(k.type, 'ssh');
    assert.equal(k.user_id, cc.demoUser);
    assert.match(k.private_key, /^-----BEGIN RSA PRIVATE KEY-----\n/);
    const [type, data, comment] = k.public_key.split(' ');
    assert.equal(type, 'ssh-rsa');
    assert.equal(comment, 'Generated-by-Nova');
    const blob = Buffer.from(data, 'base64');
    assert.equal(k.fingerprint, createHash('md5').update(blob).digest('hex').match(/../g)!.join(':'));
    // The blob's modulus is the private key's modulus.
    const jwk = createPublicKey(createPrivateKey(k.private_key)).export({ format: 'jwk' }) as { n: string };
    const modulus = Buffer.from(jwk.n, 'base64url').toString('hex');
    assert.ok(blob.toString('hex').endsWith(modulus), 'public key blob carries the private key modulus');

    // The private key is given once: show has no private_key, but the Nova show fields.
    const shown = await cc.get(`/os-keypairs/${name}`, { microversion: '2.2', token: cc.demoToken });
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.keypair.private_key, undefined);
    assert.equal(shown.body.keypair.public_key, k.public_key);
    assert.equal(shown.body.keypair.deleted, false);
    assert.equal(typeof shown.body.keypair.id, 'number');
    assert.match(shown.body.keypair.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    assert.equal((await cc.delete(`/os-keypairs/${name}`, { microversion: '2.2', token: cc.demoToken })).status, 204);
  });

  it('imports OpenSSH keys with ssh-keygen\'s fingerprints, and refuses bad key data', async () => {
    for (const [key, fp] of [[RSA, RSA_FP], [ED25519, ED25519_FP], [ECDSA, ECDSA_FP]]) {
      const name = unique('imp');
      const res = await cc.post('/os-keypairs', { keypair: { name, public_key: key } });
      assert.equal(res.status, 200, res.text); // 200 at 2.1
      assert.equal(res.body.keypair.fingerprint, fp);
      assert.equal(res.body.keypair.private_key, undefined);
      assert.equal(res.body.keypair.type, undefined);
      assert.equal((await cc.delete(`/os-keypairs/${name}`)).status, 202);
    }
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('bad'), public_key: 'ssh-rsa not-base64!' } }), 400, 'Keypair data is invalid: failed to generate fingerprint');
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('bad'), public_key: 'ssh-dss ' + RSA.split(' ')[1] } }), 400, 'Keypair data is invalid');
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('bad'), public_key: RSA.slice(0, 60) } }), 400, 'Keypair data is invalid');
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('bad'), public_key: '' } }), 400, 'Keypair data is invalid');
  });

  it('handles x509 key pairs from 2.2: imports with the SHA-1 fingerprint, generates a self-signed certificate', async () => {
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('x'), type: 'x509', public_key: CERT } }), 400, "Additional properties are not allowed ('type' was unexpected)");
    const imported = await cc.post('/os-keypairs', { keypair: { name: unique('x'), type: 'x509', public_key: CERT } }, { microversion: '2.2' });
    assert.equal(imported.status, 201, imported.text);
    assert.equal(imported.body.keypair.fingerprint, CERT_FP);
    assert.equal(imported.body.keypair.type, 'x509');
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('x'), type: 'x509', public_key: RSA } }, { microversion: '2.2' }), 400, /Keypair data is invalid: failed to generate X509 fingerprint/);

    const generated = await cc.post('/os-keypairs', { keypair: { name: unique('x'), type: 'x509' } }, { microversion: '2.2' });
    assert.equal(generated.status, 201, generated.text);
    const cert = new X509Certificate(generated.body.keypair.public_key);
    assert.equal(cert.subject, `CN=${cc.adminUser}`);
    assert.ok(cert.checkPrivateKey(createPrivateKey(generated.body.keypair.private_key)));
    assert.ok(cert.verify(cert.publicKey), 'self-signed');
    assert.equal(generated.body.keypair.fingerprint, cert.fingerprint.toLowerCase());
    for (const name of [imported.body.keypair.name, generated.body.keypair.name]) await cc.delete(`/os-keypairs/${name}`, { microversion: '2.2' });
  });

  it('keeps key pairs per user; admins reach other users with user_id from 2.10', async () => {
    const name = unique('mine');
    assert.equal((await cc.post('/os-keypairs', { keypair: { name, public_key: RSA } }, { token: cc.demoToken })).status, 200);
    // The same name for another user is fine.
    assert.equal((await cc.post('/os-keypairs', { keypair: { name, public_key: ED25519 } })).status, 200);
    assertError(await cc.post('/os-keypairs', { keypair: { name, public_key: ED25519 } }), 409, `Key pair '${name}' already exists.`);
    assert.equal((await cc.get(`/os-keypairs/${name}`)).body.keypair.fingerprint, ED25519_FP);
    assert.equal((await cc.get(`/os-keypairs/${name}`, { token: cc.demoToken })).body.keypair.fingerprint, RSA_FP);

    // Admin acting for the demo user.
    const theirs = await cc.get(`/os-keypairs/${name}?user_id=${cc.demoUser}`, { microversion: '2.10' });
    assert.equal(theirs.body.keypair.fingerprint, RSA_FP);
    assert.equal(theirs.body.keypair.user_id, cc.demoUser);
    const list = await cc.get(`/os-keypairs?user_id=${cc.demoUser}`, { microversion: '2.10' });
    assert.ok(list.body.keypairs.some((k: any) => k.keypair.name === name && k.keypair.type === 'ssh'));
    const forThem = await cc.post('/os-keypairs', { keypair: { name: unique('for'), public_key: ECDSA, user_id: cc.demoUser } }, { microversion: '2.10' });
    assert.equal(forThem.status, 201, forThem.text);
    assert.equal(forThem.body.keypair.user_id, cc.demoUser);
    // Below 2.10 the user_id query is ignored; demo may not act for the admin.
    assert.equal((await cc.get(`/os-keypairs/${name}?user_id=${cc.demoUser}`)).body.keypair.fingerprint, ED25519_FP);
    assertError(await cc.get(`/os-keypairs/${name}?user_id=${cc.adminUser}`, { microversion: '2.10', token: cc.demoToken }), 403, 'os_compute_api:os-keypairs:show');
    assertError(await cc.post('/os-keypairs', { keypair: { name: unique('x'), public_key: RSA, user_id: cc.adminUser } }, { microversion: '2.10', token: cc.demoToken }), 403);

    assertError(await cc.delete(`/os-keypairs/${name}?user_id=${cc.demoUser}`, { microversion: '2.10', token: cc.demoToken }).then(async (r) => {
      assert.equal(r.status, 204);
      return cc.get(`/os-keypairs/${name}`, { token: cc.demoToken });
    }), 404, `Keypair ${name} not found for user ${cc.demoUser}`);
    assertError(await cc.delete(`/os-keypairs/${name}`, { token: cc.demoToken }), 404);
    await cc.delete(`/os-keypairs/${name}`);
    await cc.delete(`/os-keypairs/${forThem.body.keypair.name}?user_id=${cc.demoUser}`, { microversion: '2.10' });
  });

  it('validates names', async () => {
    assertError(await cc.post('/os-keypairs', { keypair: { name: 'bad/name', public_key: RSA } }), 400, /Invalid input for field\/attribute name\. Value: bad\/name\. 'bad\/name' does not match/);
    assertError(await cc.post('/os-keypairs', { keypair: { name: '', public_key: RSA } }), 400, /field\/attribute name/);
    assertError(await cc.post('/os-keypairs', { keypair: { name: 'x'.repeat(256), public_key: RSA } }), 400, /is too long/);
    assertError(await cc.post('/os-keypairs', { keypair: { public_key: RSA } }), 400, "'name' is a required property");
    assertError(await cc.post('/os-keypairs', { keypair: { name: 'ok', type: 'pgp' } }, { microversion: '2.2' }), 400, /'pgp' is not one of \['ssh', 'x509'\]/);
    assertError(await cc.get('/os-keypairs/none-such'), 404, `Keypair none-such not found for user ${cc.adminUser}`);
  });

  it('pages the list by name from 2.35 and applies the key_pairs quota', async () => {
    const who = await cc.projectUser(unique('kp'));
    const names = ['a-key', 'b-key', 'c-key', 'd-key'];
    for (const name of names) assert.equal((await cc.post('/os-keypairs', { keypair: { name, public_key: RSA } }, { token: who.token })).status, 200);
    const all = await cc.get('/os-keypairs', { token: who.token });
    assert.deepEqual(all.body.keypairs.map((k: any) => k.keypair.name), names);
    assert.equal(all.body.keypairs_links, undefined);
    const page = await cc.get('/os-keypairs?limit=2', { token: who.token, microversion: '2.35' });
    assert.deepEqual(page.body.keypairs.map((k: any) => k.keypair.name), ['a-key', 'b-key']);
    assert.match(page.body.keypairs_links[0].href, /\/os-keypairs\?limit=2&marker=b-key$/);
    const rest = await cc.get('/os-keypairs?marker=b-key', { token: who.token, microversion: '2.35' });
    assert.deepEqual(rest.body.keypairs.map((k: any) => k.keypair.name), ['c-key', 'd-key']);
    assertError(await cc.get('/os-keypairs?marker=zzz', { token: who.token, microversion: '2.35' }), 400, 'Marker zzz could not be found.');
    // Below 2.35 limit is ignored.
    assert.equal((await cc.get('/os-keypairs?limit=1', { token: who.token })).body.keypairs.length, 4);

    // [quota] key_pairs = 6 in this cloud.
    for (const name of ['e-key', 'f-key']) assert.equal((await cc.post('/os-keypairs', { keypair: { name, public_key: RSA } }, { token: who.token })).status, 200);
    assertError(await cc.post('/os-keypairs', { keypair: { name: 'g-key', public_key: RSA } }, { token: who.token }), 403, 'Quota exceeded, too many key pairs.');
    assertError(await cc.post('/os-keypairs', { keypair: { name: 'g-key' } }, { token: who.token }), 403, 'Quota exceeded, too many key pairs.');
    // A user limit may not exceed the project's; once the project's is raised, the user's applies.
    assertError(await cc.put(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`, { quota_set: { key_pairs: 7 } }), 400,
      'Quota limit 7 for key_pairs must be less than or equal to 6.');
    assert.equal((await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { key_pairs: 10 } })).status, 200);
    const raised = await cc.put(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`, { quota_set: { key_pairs: 7 } });
    assert.equal(raised.status, 200, raised.text);
    assert.equal(raised.body.quota_set.key_pairs, 7);
    assert.equal((await cc.post('/os-keypairs', { keypair: { name: 'g-key', public_key: RSA } }, { token: who.token })).status, 200);
    assertError(await cc.post('/os-keypairs', { keypair: { name: 'h-key', public_key: RSA } }, { token: who.token }), 403, 'Quota exceeded, too many key pairs.');
  });
});
