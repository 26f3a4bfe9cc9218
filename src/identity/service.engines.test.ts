// The identity service's storage on every engine: migrations, uniqueness, cascades and
// effective role computation must behave the same on SQLite, PostgreSQL and MariaDB.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase, migrateService } from '../db/index.js';
import { testEngines } from '../db/testing.js';
import { Conflict, Forbidden, Unauthorized } from '../core/errors.js';
import { identityMigrations } from './db/migrations.js';
import { IdentityService } from './service.js';
import { bootstrapIdentity } from './bootstrap.js';

for (const engine of testEngines()) {
  describe(`identity storage on ${engine.engine}`, { skip: engine.skip }, () => {
    it('bootstraps, enforces uniqueness, computes effective roles and cascades deletes', async () => {
      const target = await engine.create();
      const database = await openDatabase(target.connection);
      try {
        await migrateService(database, 'identity', identityMigrations);
        const identity = new IdentityService({ database, passwordHashRounds: 4 });
        const services = [{ type: 'identity', name: 'keystone', url: 'http://127.0.0.1:5000/identity' }];
        await bootstrapIdentity(identity, { region: 'RegionOne', adminPassword: 'pw', demoPassword: 'pw2', services });
        await bootstrapIdentity(identity, { region: 'RegionOne', services }); // a second start changes nothing
        assert.equal((await identity.listEndpoints()).length, 3);

        const admin = await identity.findUserByName('admin', 'default');
        await identity.checkPassword(admin.id, 'pw');
        await assert.rejects(identity.checkPassword(admin.id, 'wrong'), Unauthorized);
        await assert.rejects(identity.createUser({ name: 'admin', domain_id: 'default' }), Conflict);

        const adminProject = await identity.findProjectByName('admin', 'default');
        const roles = (await identity.rolesOnTarget(admin.id, 'project', adminProject.id)).map((r) => r.name);
        assert.deepEqual(roles, ['admin', 'member', 'reader'], 'admin implies member implies reader');

        // A group grant inherited to projects reaches a member on a child project.
        const parent = await identity.createProject({ name: 'parent', domain_id: 'default' });
        const child = await identity.createProject({ name: 'child', parent_id: parent.id });
        const user = await identity.createUser({ name: 'u1', password: 'secret' });
        const group = await identity.createGroup({ name: 'g1' });
        await identity.addUserToGroup(group.id, user.id);
        const reader = await identity.findRoleByName('reader');
        await identity.grantRole({ actor_type: 'group', actor_id: group.id, target_type: 'project', target_id: parent.id, role_id: reader.id, inherited: true });
        assert.deepEqual((await identity.rolesOnTarget(user.id, 'project', child.id)).map((r) => r.name), ['reader']);
        assert.deepEqual(await identity.rolesOnTarget(user.id, 'project', parent.id), [], 'inherited grants skip their own target');
        await assert.rejects(identity.deleteProject(parent.id), Forbidden);

        // Deleting a disabled domain removes what it owns.
        const domain = await identity.createDomain({ name: 'd1' });
        const inDomain = await identity.createUser({ name: 'u2', domain_id: domain.id });
        await assert.rejects(identity.deleteDomain(domain.id), Forbidden);
        await identity.updateDomain(domain.id, { enabled: false });
        await identity.deleteDomain(domain.id);
        await assert.rejects(identity.getUser(inDomain.id), /Could not find user/);
      } finally {
        await database.close();
        await target.drop();
      }
    });
  });
}
