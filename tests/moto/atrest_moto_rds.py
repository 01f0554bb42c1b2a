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


def patch():
    _unique_dbi_resource_ids()
    _cluster_create_refuses_an_existing_identifier()
    _cluster_resource_id_filter()
    _cluster_restore_encrypts_with_kms_key()
    _cluster_rename_keeps_members()
