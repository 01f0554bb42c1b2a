"""RDS corrections for moto 5.2.5, applied by atrest_moto.py at start-up.

Each patch makes moto answer as AWS does where atrest's RDS rules and fixes depend on it:

* DbiResourceId: moto gives every DB instance the same hard-coded `db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U`.
  AWS gives each instance its own immutable id (Config's RESOURCE_ID for AWS::RDS::DBInstance),
  kept across renames and never reused. Each instance now gets a unique `db-` + 26 characters.
* DescribeDBClusters filter `db-cluster-resource-id` (AWS supports it; moto rejects it).
* RestoreDBClusterFromSnapshot with `KmsKeyId` from an unencrypted snapshot: AWS encrypts the new
  cluster with that key; moto left it unencrypted.
* ModifyDBCluster `NewDBClusterIdentifier`: AWS keeps the member instances in the renamed cluster;
  moto left them pointing at the old name (so the cluster lost its members).
* CreateDBCluster / RestoreDBClusterFromSnapshot with the identifier of an existing cluster: AWS
  answers `DBClusterAlreadyExistsFault` and leaves that cluster alone; moto replaced it with a new
  (unencrypted) cluster before failing on its automated snapshot. Found by the fault sweeps: a
  restore whose response was lost and that the SDK retried turned the encrypted target back into
  an unencrypted one.
* CopyDBClusterSnapshot with `KmsKeyId` from an unencrypted cluster snapshot: AWS returns an error
  ("If you copy an unencrypted DB cluster snapshot and specify a value for the KmsKeyId parameter,
  an error is returned", CopyDBClusterSnapshot API reference); moto made an encrypted copy. The
  reference does not name the error code; InvalidParameterCombination is RDS's code for a request
  whose parameters cannot go together.
* RestoreDBClusterFromSnapshot `DeletionProtection`: "By default, deletion protection isn't
  enabled" (API reference); moto copied the snapshot's cluster's setting and ignored an explicit
  false, so a cluster restored from a protected cluster's snapshot could not be deleted.
* CreateDBSnapshot of a stopped (or otherwise busy) instance: "The source DB instance must be in
  the available or storage-optimization state" (CreateDBSnapshot API reference, error
  InvalidDBInstanceState); moto snapshotted an instance in any state.
* RestoreDBInstanceFromDBSnapshot: IAM role associations are not restore parameters (they are
  made with AddRoleToDBInstance), and a restore manages the master password in Secrets Manager
  "for RDS for Oracle only" (ManageMasterUserPassword, API reference); moto copied the source's
  roles and gave every copy of a managed-password source a new secret.
"""

import random
import string

from moto.rds.exceptions import RDSClientError
from moto.rds.models import DBCluster, DBInstance, FilterDef, RDSBackend


def _random_suffix(n=26):
    return "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(n))


def _unique_dbi_resource_ids():
    original_init = DBInstance.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.dbi_resource_id = "db-" + _random_suffix()

    DBInstance.__init__ = __init__

    # moto makes a read replica by copying its primary object, id included.
    original_replica = RDSBackend.create_db_instance_read_replica

    def create_db_instance_read_replica(self, db_kwargs):
        replica = original_replica(self, db_kwargs)
        replica.dbi_resource_id = "db-" + _random_suffix()
        return replica

    RDSBackend.create_db_instance_read_replica = create_db_instance_read_replica


def _cluster_resource_id_filter():
    DBCluster.SUPPORTED_FILTERS = dict(DBCluster.SUPPORTED_FILTERS)
    DBCluster.SUPPORTED_FILTERS["db-cluster-resource-id"] = FilterDef(
        ["db_cluster_resource_id"], "DB Cluster Resource Ids")


def _cluster_restore_encrypts_with_kms_key():
    original = RDSBackend.restore_db_cluster_from_snapshot

    def restore_db_cluster_from_snapshot(self, from_snapshot_id, overrides):
        cluster = original(self, from_snapshot_id, overrides)
        key = overrides.get("kms_key_id")
        if key and not cluster.storage_encrypted:
            cluster.storage_encrypted = True
            cluster.kms_key_id = self._validate_kms_key(key)
        return cluster

    RDSBackend.restore_db_cluster_from_snapshot = restore_db_cluster_from_snapshot


def _cluster_rename_keeps_members():
    original = RDSBackend.modify_db_cluster

    def modify_db_cluster(self, kwargs):
        old = kwargs.get("db_cluster_identifier")
        new = kwargs.get("new_db_cluster_identifier")
        cluster = original(self, kwargs)
        if new and old and new != old:
            for database in self.databases.values():
                if database.db_cluster_identifier == old:
                    database.db_cluster_identifier = new
        return cluster

    RDSBackend.modify_db_cluster = modify_db_cluster


def _cluster_create_refuses_an_existing_identifier():
    original = RDSBackend.create_db_cluster

    def create_db_cluster(self, kwargs):
        if kwargs.get("db_cluster_identifier") in self.clusters:
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        return original(self, kwargs)

    RDSBackend.create_db_cluster = create_db_cluster


def _unencrypted_cluster_snapshot_copy_refuses_a_key():
    original = RDSBackend.copy_db_cluster_snapshot

    def copy_db_cluster_snapshot(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier,
                                 kms_key_id=None, *args, **kwargs):
        if kms_key_id:
            source = self.get_db_cluster_snapshot(source_db_cluster_snapshot_identifier)
            if not source.encrypted:
                raise RDSClientError(
                    "InvalidParameterCombination",
                    "You cannot specify a KmsKeyId when copying an unencrypted DB cluster snapshot.")
        return original(self, source_db_cluster_snapshot_identifier, target_db_cluster_snapshot_identifier,
                        kms_key_id, *args, **kwargs)

    RDSBackend.copy_db_cluster_snapshot = copy_db_cluster_snapshot


def _cluster_restore_deletion_protection_defaults_off():
    original = RDSBackend.restore_db_cluster_from_snapshot

    def restore_db_cluster_from_snapshot(self, from_snapshot_id, overrides):
        cluster = original(self, from_snapshot_id, overrides)
        cluster.deletion_protection = bool(overrides.get("deletion_protection"))
        return cluster

    RDSBackend.restore_db_cluster_from_snapshot = restore_db_cluster_from_snapshot


def _db_snapshot_needs_a_running_instance():
    original = RDSBackend.create_db_snapshot

    def create_db_snapshot(self, db_instance_identifier, db_snapshot_identifier, snapshot_type="manual", *args, **kwargs):
        database = self.databases.get(db_instance_identifier)
        # Manual snapshots only: moto takes its automated ones itself, at creation.
        if snapshot_type == "manual" and database is not None and database.status not in ("available", "storage-optimization"):
            raise RDSClientError(
                "InvalidDBInstanceState",
                f"Cannot create a snapshot because the database instance {db_instance_identifier} is not currently "
                f"in the available state ({database.status}).")
        return original(self, db_instance_identifier, db_snapshot_identifier, snapshot_type, *args, **kwargs)

    RDSBackend.create_db_snapshot = create_db_snapshot


def _db_instance_restore_drops_roles_and_the_managed_password():
    original = RDSBackend.restore_db_instance_from_db_snapshot

    def restore_db_instance_from_db_snapshot(self, from_snapshot_id, overrides):
        database = original(self, from_snapshot_id, overrides)
        database._associated_roles = []
        managed = overrides.get("manage_master_user_password") and database.engine.startswith("oracle")
        if hasattr(database, "master_user_secret") and not managed:
            database.master_user_secret.delete_secret()
            del database.master_user_secret
            database.manage_master_user_password = False
        return database

    RDSBackend.restore_db_instance_from_db_snapshot = restore_db_instance_from_db_snapshot


def patch():
    _db_snapshot_needs_a_running_instance()
    _db_instance_restore_drops_roles_and_the_managed_password()
    _unique_dbi_resource_ids()
    _cluster_create_refuses_an_existing_identifier()
    _cluster_resource_id_filter()
    _cluster_restore_encrypts_with_kms_key()
    _cluster_rename_keeps_members()
    _unencrypted_cluster_snapshot_copy_refuses_a_key()
    _cluster_restore_deletion_protection_defaults_off()
